"""The OpenVINO engine: the same pairs, windows and float32 logits as torch; its disk cache; auto; the extra."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
from _models import CORPUS

import ce_rerank
from ce_rerank import CrossEncoderScorer, ModelLoadError, TruncationWarning
from ce_rerank import _openvino as ov_engine

pytest.importorskip("openvino")

QUERY = "capital of France"
# Words drawn at random (seeded) from the test corpus: no two windows hold the same tokens, so the best
# window is never a tie that float rounding could break either way.
_WORDS = " ".join(CORPUS).split()
VARIED = " ".join(random.Random(0).choices(_WORDS, k=700))
LONG = (
    " ".join(["bananas are yellow fruit"] * 90)
    + " the capital of France is Paris "
    + " ".join(["python runs the tests"] * 90)
)
TEXTS = [
    "The capital of France is Paris, a city on the Seine.",
    "Paris.",
    "",
    "Zürich, São Paulo 🙂 مرحبا \x00 nul and \x07 bell and \u202eRTL",
    "Bananas are yellow fruit rich in potassium; they grow in the tropics and are picked green. " * 3,
    VARIED,
]


def _pair(path: str, **settings: object) -> tuple[CrossEncoderScorer, CrossEncoderScorer]:
    return (
        CrossEncoderScorer(path, backend="torch", **settings),  # type: ignore[arg-type]
        CrossEncoderScorer(path, backend="openvino", **settings),  # type: ignore[arg-type]
    )


def _entries() -> list[Path]:
    root = ov_engine.cache_root()
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


@pytest.mark.parametrize(
    "model_dir", ["tiny_model_dir", "tiny_two_label_model_dir", "minilm_model_dir", "minilm_two_label_model_dir"]
)
def test_openvino_float32_gives_torch_float32_logits(model_dir: str, request: pytest.FixtureRequest) -> None:
    path = request.getfixturevalue(model_dir)
    torch_scorer, ov_scorer = _pair(path, dtype="float32", window_tokens=32)
    want, got = torch_scorer.score(QUERY, TEXTS), ov_scorer.score(QUERY, TEXTS)
    assert ov_scorer.load().backend == "openvino" and torch_scorer.load().backend == "torch"
    assert got.raw == pytest.approx(want.raw, abs=1e-4)
    assert got.relevance == pytest.approx(want.relevance, abs=5e-5)
    assert got.spans == want.spans and got.spans[-1] is not None  # the long text was windowed alike
    assert (got.pairs, got.batches, got.windowed) == (want.pairs, want.batches, want.windowed)
    assert max(got.raw) - min(got.raw) > 1e-3  # the texts score differently: the check has teeth


def test_the_openvino_tokenizer_builds_the_torch_paths_batches_exactly(tiny_model_dir: str) -> None:
    torch_scorer, ov_scorer = _pair(tiny_model_dir, dtype="float32")
    ce = torch_scorer.load().model
    lm = ov_scorer.load()
    texts = [*TEXTS, LONG + " and more"]  # the last two are longer than the window: truncated by both
    want = ce.preprocess([(QUERY, t) for t in texts])
    tok = lm.tokenizer
    tok._seen = {}
    cold = tok.pairs(QUERY, texts)  # nothing planned: every pair encoded afresh
    tok(texts[::2], add_special_tokens=False)  # as the planning does: these are reused, the rest encoded
    mixed = tok.pairs(QUERY, texts)
    assert set(tok._seen) == set(texts[::2])
    tok(texts, add_special_tokens=False)
    reused = [tok.pairs(QUERY, texts), tok.pairs(QUERY, texts)]  # reuse leaves the kept encodings as they were
    for got in (cold, mixed, *reused):
        assert set(got) == {"input_ids", "attention_mask", "token_type_ids"}
        for name, array in got.items():
            assert array.tolist() == want[name].tolist(), name
    assert cold["input_ids"].shape[1] == lm.max_length == torch_scorer.load().max_length
    short = texts[:2]  # padded to its own longest pair, as preprocess pads
    for name, array in tok.pairs(QUERY, short).items():
        assert array.tolist() == ce.preprocess([(QUERY, t) for t in short])[name].tolist(), name


@pytest.mark.parametrize("long_text", ["window", "truncate"])
def test_planning_is_shared_the_same_pairs_spans_and_batches_on_both_engines(
    tiny_model_dir: str, long_text: str
) -> None:
    torch_scorer, ov_scorer = _pair(tiny_model_dir, long_text=long_text, window_tokens=32, batch_size=3)
    with pytest.warns(TruncationWarning) if long_text == "truncate" else _nothing():
        want, *_ = torch_scorer._plan(torch_scorer.load(), QUERY, TEXTS)
    with pytest.warns(TruncationWarning) if long_text == "truncate" else _nothing():
        got, *_ = ov_scorer._plan(ov_scorer.load(), QUERY, TEXTS)
    assert got == want and len(got) > len(TEXTS) - (long_text == "truncate") * len(TEXTS)
    assert list(ov_scorer._batches(got)) == list(torch_scorer._batches(want))


def _nothing():  # type: ignore[no-untyped-def]
    import contextlib

    return contextlib.nullcontext()


def test_small_batches_and_one_batch_give_the_same_scores(minilm_model_dir: str) -> None:
    small = CrossEncoderScorer(minilm_model_dir, backend="openvino", dtype="float32", batch_size=2)
    whole = CrossEncoderScorer(minilm_model_dir, backend="openvino", dtype="float32", batch_size=64)
    a, b = small.score(QUERY, TEXTS), whole.score(QUERY, TEXTS)
    assert a.batches > b.batches
    assert a.raw == pytest.approx(b.raw, abs=1e-5)  # one compiled model for every batch shape


def test_a_converted_model_is_reused_by_new_scorers_without_converting_again(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32").score(QUERY, TEXTS)
    entries = _entries()
    ce_rerank.clear_model_cache()  # as a new process would: nothing loaded
    from ce_rerank import _convert

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("converted again")

    monkeypatch.setattr(_convert, "convert", refuse)
    again = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32").score(QUERY, TEXTS)
    assert again.raw == first.raw
    assert _entries() == entries


def test_a_corrupt_cache_entry_is_rebuilt(tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32", max_length=96)
    first = scorer.score(QUERY, TEXTS)
    entry = scorer.load().entry
    (entry / "model.xml").write_text("<net>torn</net>")
    (entry / "model.bin").write_bytes(b"\0" * 10)
    ce_rerank.clear_model_cache()
    from ce_rerank import _convert

    calls = []
    real = _convert.convert
    monkeypatch.setattr(_convert, "convert", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32", max_length=96).score(QUERY, TEXTS)
    assert calls == [1]
    assert again.raw == pytest.approx(first.raw, abs=1e-6)
    assert (entry / "model.xml").read_text() != "<net>torn</net>"
    assert not [p for p in entry.parent.iterdir() if p.name.startswith(".")]  # nothing left aside


def test_concurrent_calls_from_threads_equal_serial_calls(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32")
    queries = [f"{QUERY} {i}" for i in range(6)]
    serial = [scorer.score(q, TEXTS).raw for q in queries]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda q: scorer.score(q, TEXTS).raw, queries))
    assert threaded == serial


def test_threads_and_precision_follow_the_torch_paths_settings(minilm_model_dir: str) -> None:
    exact = CrossEncoderScorer(minilm_model_dir, backend="openvino", dtype="float32").load()
    assert exact.compiled.get_property("INFERENCE_NUM_THREADS") == torch.get_num_threads() == 1
    assert str(exact.compiled.get_property("INFERENCE_PRECISION_HINT")) == "<Type: 'float32'>"
    default = CrossEncoderScorer(minilm_model_dir, backend="openvino")
    hint = str(default.load().compiled.get_property("INFERENCE_PRECISION_HINT"))
    from ce_rerank._local import native_bfloat16

    assert ov_engine.native_bfloat16() == native_bfloat16()  # OpenVINO and torch read the same CPU flags
    if native_bfloat16():
        assert default.dtype == "bfloat16" and hint == "<Type: 'bfloat16'>"
        fast, slow = default.score(QUERY, TEXTS).raw, exact  # the fast path really ran, close to exact
        exact_raw = CrossEncoderScorer(minilm_model_dir, backend="openvino", dtype="float32").score(QUERY, TEXTS).raw
        assert fast != exact_raw and fast == pytest.approx(exact_raw, abs=0.01)
        del slow
    else:
        assert default.dtype == "float32" and hint == "<Type: 'float32'>"


def test_a_cached_model_scores_in_a_new_process_without_torch_or_sentence_transformers(tiny_model_dir: str) -> None:
    want = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32").score(QUERY, TEXTS[:3]).raw
    script = textwrap.dedent(
        f"""
        import json, sys
        from ce_rerank import CrossEncoderScorer
        scorer = CrossEncoderScorer({tiny_model_dir!r}, dtype="float32")
        raw = scorer.score({QUERY!r}, {TEXTS[:3]!r}).raw
        lm = scorer.load()
        print(json.dumps({{
            "raw": raw, "backend": lm.backend, "threads": lm.compiled.get_property("INFERENCE_NUM_THREADS"),
            "imported": [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules],
        }}))
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["imported"] == [] and out["backend"] == "openvino" and out["threads"] == 1
    assert out["raw"] == want


def test_two_processes_converting_at_once_both_succeed_with_one_entry(tiny_model_dir: str, tmp_path: Path) -> None:
    script = textwrap.dedent(
        f"""
        from ce_rerank import CrossEncoderScorer
        print(CrossEncoderScorer({tiny_model_dir!r}, backend="openvino", dtype="float32").score("q", ["a b"]).raw)
        """
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CE_RERANK_CACHE_DIR": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [e.decode()[-2000:] for _, e in outs]
    assert outs[0][0] == outs[1][0]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary folder left
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize("adapter", ["langchain", "llamaindex"])
def test_both_adapters_run_on_openvino(tiny_model_dir: str, adapter: str) -> None:
    texts = TEXTS[:2] + TEXTS[3:5]
    want = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32").score(QUERY, texts)
    if adapter == "langchain":
        from langchain_core.documents import Document

        from langchain_ce_rerank import CrossEncoderRerank

        lc = CrossEncoderRerank(model=tiny_model_dir, backend="openvino", dtype="float32", top_n=None)
        out = lc.compress_documents([Document(page_content=t, id=str(i)) for i, t in enumerate(texts)], QUERY)
        got = {int(d.id): d.metadata["ce_raw_score"] for d in out}  # type: ignore[arg-type]
        scorer = lc.reranker().scorer
    else:
        from llama_index.core.schema import NodeWithScore, TextNode

        from llamaindex_ce_rerank import CrossEncoderRerank as LIRerank

        li = LIRerank(model=tiny_model_dir, backend="openvino", dtype="float32", top_n=None)
        nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(texts)]
        out_nodes = li.postprocess_nodes(nodes, query_str=QUERY)
        got = {int(n.node.node_id): n.node.metadata["ce_raw_score"] for n in out_nodes}
        scorer = li.reranker().scorer
    assert isinstance(scorer, CrossEncoderScorer) and scorer.load().backend == "openvino"
    assert [got[i] for i in range(len(texts))] == want.raw


# -- auto, the extra, what the engine does not convert ----------------------------------------


def test_auto_is_the_default_and_picks_openvino_on_the_cpu(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir)
    assert scorer.backend == "auto" and scorer.load().backend == "openvino"
    assert CrossEncoderScorer(tiny_model_dir, device="cuda", dtype="float32").backend == "torch"


def test_without_the_extra_openvino_fails_at_construction_and_auto_quietly_uses_torch(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(ImportError) as err:
        CrossEncoderScorer(tiny_model_dir, backend="openvino")
    assert 'pip install "ce-rerank[openvino]"' in str(err.value)
    from langchain_ce_rerank import CrossEncoderRerank

    with pytest.raises(ImportError, match=r"ce-rerank\[openvino\]"):
        CrossEncoderRerank(model=tiny_model_dir, backend="openvino")
    ce_rerank.clear_model_cache()
    auto = CrossEncoderScorer(tiny_model_dir)
    assert auto.backend == "torch" and auto.load().backend == "torch"
    assert len(auto.score(QUERY, TEXTS[:2]).raw) == 2


def test_openvino_needs_the_cpu(tiny_model_dir: str) -> None:
    with pytest.raises(ValueError, match=r"backend='openvino' runs on the CPU \(device is 'cuda'\)"):
        CrossEncoderScorer(tiny_model_dir, backend="openvino", device="cuda", dtype="float32")


@pytest.fixture(scope="module")
def distilbert_dir(tiny_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny DistilBERT cross-encoder: a sequence classifier outside the BERT family this engine converts."""
    import shutil

    from transformers import DistilBertConfig, DistilBertForSequenceClassification

    out = tmp_path_factory.mktemp("distilbert")
    for f in Path(tiny_model_dir).iterdir():
        if f.name not in ("config.json", "model.safetensors"):
            shutil.copy(f, out / f.name)
    torch.manual_seed(0)
    config = DistilBertConfig(
        vocab_size=600, dim=32, n_layers=2, n_heads=2, hidden_dim=64, max_position_embeddings=128, num_labels=1,
        architectures=["DistilBertForSequenceClassification"],
    )  # fmt: skip
    DistilBertForSequenceClassification(config).save_pretrained(out)
    return str(out)


def test_another_architecture_runs_on_torch_under_auto_and_fails_clearly_on_openvino(distilbert_dir: str) -> None:
    auto = CrossEncoderScorer(distilbert_dir, dtype="float32")
    assert auto.load().backend == "torch"
    assert len(auto.score(QUERY, TEXTS[:2]).raw) == 2
    with pytest.raises(ModelLoadError, match="backend='openvino' converts BERT-family sequence classifiers"):
        CrossEncoderScorer(distilbert_dir, backend="openvino").score(QUERY, TEXTS[:2])


def test_the_cache_folder_follows_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(ov_engine.CACHE_ENV, str(tmp_path / "mine"))
    assert ov_engine.cache_root() == tmp_path / "mine"
    monkeypatch.delenv(ov_engine.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert ov_engine.cache_root() == tmp_path / "xdg" / "ce-rerank"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert ov_engine.cache_root() == Path.home() / ".cache" / "ce-rerank"


def test_the_cache_key_changes_with_the_model_files_and_the_settings(tiny_model_dir: str, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_model_dir, copy)
    key = ov_engine.entry_key(copy, max_length=None, quantize="none", trust_remote_code=False)
    assert key == ov_engine.entry_key(copy, max_length=None, quantize="none", trust_remote_code=False)
    assert key != ov_engine.entry_key(copy, max_length=64, quantize="none", trust_remote_code=False)
    assert key != ov_engine.entry_key(copy, max_length=None, quantize="int8", trust_remote_code=False)
    config = json.loads((copy / "config.json").read_text())
    config["num_labels"] = 1
    (copy / "config.json").write_text(json.dumps(config, indent=3))  # another size: another key
    assert key != ov_engine.entry_key(copy, max_length=None, quantize="none", trust_remote_code=False)


def test_the_cache_key_changes_with_the_code_that_converts(tmp_path: Path) -> None:
    # a cached entry written by older conversion code must not be served after that code changes
    package = Path(ov_engine.__file__).parent
    for name in ov_engine._GRAPH_SOURCES:
        (tmp_path / name).write_bytes((package / name).read_bytes())
    before = ov_engine._rewrites_digest(tmp_path)
    assert before == ov_engine._rewrites_digest(package)
    for name in ("_speed.py", "_convert.py", "_openvino.py"):
        with open(tmp_path / name, "a", encoding="utf-8") as fh:
            fh.write("\n# changed\n")
        after = ov_engine._rewrites_digest(tmp_path)
        assert after != before, name
        before = after


def test_int8_is_nncf_static_quantisation(tiny_model_dir: str) -> None:
    # the tiny model: NNCF calibrates in seconds (its random activations are too wild to judge scores by)
    exact = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32")
    int8 = CrossEncoderScorer(tiny_model_dir, backend="openvino", quantize="int8")
    assert int8.quantize == "int8" and int8.dtype == "float32"
    lm = int8.load()
    assert lm.meta["quantize"] == "int8" and lm.entry != exact.load().entry
    import openvino

    ops = [op.get_type_name() for op in openvino.Core().read_model(str(lm.entry / "model.xml")).get_ops()]
    assert ops.count("FakeQuantize") >= 8  # the inputs of the linear layers and attention products
    assert exact.score(QUERY, TEXTS).raw != int8.score(QUERY, TEXTS).raw


@pytest.mark.shared_data
def test_int8_keeps_a_trained_rerankers_order_on_clear_cases(
    shared_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ce_rerank import _convert

    real = _convert.calibration_pairs
    monkeypatch.setattr(_convert, "calibration_pairs", lambda: real()[::10])  # 34 pairs: seconds, not minutes
    query = "What is the capital of France?"
    texts = [
        "Paris is the capital and most populous city of France.",
        "The Eiffel Tower is a wrought-iron lattice tower in Paris.",
        "Bananas are yellow fruit rich in potassium.",
        "Python is a programming language.",
    ]
    exact = CrossEncoderScorer(shared_model_dir, backend="openvino", dtype="float32").score(query, texts).raw
    int8 = CrossEncoderScorer(shared_model_dir, backend="openvino", quantize="int8").score(query, texts).raw
    assert int8 != exact, (int8, exact)
    # the answer stays first, clearly above the rest (float32: 2.1 against -3.8 here)
    assert exact[0] > max(exact[1:]) + 1
    assert int8[0] > max(int8[1:]) + 1, (int8, exact)


def test_a_failed_conversion_runs_on_torch_under_auto_and_fails_clearly_on_openvino(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from ce_rerank import _convert

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("an operation OpenVINO does not know")

    monkeypatch.setenv(ov_engine.CACHE_ENV, str(tmp_path))  # an empty cache: conversion is needed
    monkeypatch.setattr(_convert, "convert", broken)
    with caplog.at_level("WARNING", logger="ce_rerank"):
        auto = CrossEncoderScorer(tiny_model_dir, dtype="float32", max_length=80)
        assert auto.load().backend == "torch"
    assert "OpenVINO could not convert" in caplog.text and "scoring on torch" in caplog.text
    with pytest.raises(ModelLoadError, match=r"OpenVINO could not convert it \(RuntimeError: an operation"):
        CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32", max_length=80).load()
    assert list(tmp_path.iterdir()) == []  # nothing half-written left behind


def test_an_unwritable_cache_folder_names_the_setting(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv(ov_engine.CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(ModelLoadError, match=f"set {ov_engine.CACHE_ENV} to a writable folder"):
        CrossEncoderScorer(tiny_model_dir, backend="openvino", max_length=72).load()


def test_openvino_applies_the_prompt_and_the_query_budget_as_torch_does(tiny_model_dir: str) -> None:
    long_query = " ".join(["capital of France and its largest city on the Seine"] * 6)
    torch_scorer, ov_scorer = _pair(tiny_model_dir, dtype="float32", prompt="Judge relevance: ", max_query_tokens=12)
    with pytest.warns(ce_rerank.QueryTruncationWarning):
        want = torch_scorer.score(long_query, TEXTS)
    with pytest.warns(ce_rerank.QueryTruncationWarning):
        got = ov_scorer.score(long_query, TEXTS)
    assert ov_scorer.load().backend == "openvino"
    assert got.raw == pytest.approx(want.raw, abs=1e-4)
    assert got.spans == want.spans
    plain = CrossEncoderScorer(tiny_model_dir, backend="openvino", dtype="float32", max_query_tokens=12)
    with pytest.warns(ce_rerank.QueryTruncationWarning):
        assert plain.score(long_query, TEXTS).raw != pytest.approx(got.raw, abs=1e-4)  # the prompt counted


def test_openvino_uses_the_models_saved_default_prompt(tiny_model_dir: str, tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    saved = tmp_path / "with-prompt"
    CrossEncoder(tiny_model_dir, prompts={"web": "web search: "}, default_prompt_name="web").save_pretrained(str(saved))
    torch_scorer, ov_scorer = _pair(str(saved), dtype="float32")
    want, got = torch_scorer.score(QUERY, TEXTS), ov_scorer.score(QUERY, TEXTS)
    assert got.raw == pytest.approx(want.raw, abs=1e-4)
    off = CrossEncoderScorer(str(saved), backend="openvino", dtype="float32", prompt="")  # "" turns it off
    assert off.score(QUERY, TEXTS).raw != pytest.approx(got.raw, abs=1e-4)


def test_openvino_refuses_a_file_given_as_the_model_before_converting(tiny_model_dir: str) -> None:
    with pytest.raises(ModelLoadError, match="it is a file, not a model directory"):
        CrossEncoderScorer(str(Path(tiny_model_dir) / "config.json"), backend="openvino").load()
