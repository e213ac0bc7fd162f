"""ce-rerank finetune --loss distill: the teacher's targets, training on them, and the command.

Offline and fast: a table scorer (conftest.FakeScorer), tiny random cross-encoders (tests/_models.py), MiniLM's
real encoder where training must visibly learn, and the demo corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import FakeScorer, spy

import ce_rerank.finetune as ft
from ce_rerank.evaluation import Dataset
from ce_rerank.workflows.cli import main
from ce_rerank.workflows.evaluation._first_stage import bm25_run
from ce_rerank.workflows.finetune._distill import distill_lists
from ce_rerank.workflows.finetune._objective import objective

DEMO = Path(__file__).resolve().parents[1] / "ce_rerank" / "data" / "demo"

# six documents; the first stage ranks d0 first, d5 last; the base scores them by the table
TEXTS = {f"d{i}": f"text {i}" for i in range(6)}
BASE = {"text 0": 1.0, "text 1": 5.0, "text 2": 3.0, "text 3": 0.0, "text 4": -1.0, "text 5": 4.0}
RUN = {q: {f"d{i}": float(10 - i) for i in range(6)} for q in ("q", "none", "zero")}


def _data() -> Dataset:
    qrels = {"q": {"d2": 1, "d5": 2, "d4": 0}, "zero": {"d1": 0}}  # "none" is unjudged, "zero" judged 0 only
    return Dataset(name="t", corpus=dict(TEXTS), queries={"q": "a", "none": "b", "zero": "c"}, qrels=qrels)


def _targets(rows: ft.TrainingPairs) -> dict[str, float]:
    return {p: t for p, t in zip(rows.passages, rows.labels, strict=True)}


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        # first stage alone: d0 d1 d2 d3 (depth 4) then d5, the positive it did not retrieve; positives lifted:
        # d5 (grade 2), d2 (grade 1), d0, d1, d3 take the base's scores 5, 4, 3, 1, 0 in that order
        ((1.0, 0.0), {"text 5": 5.0, "text 2": 4.0, "text 0": 3.0, "text 1": 1.0, "text 3": 0.0}),
        # the base alone: d1 d5 d2 d0 d3; positives lifted: d5 d2 d1 d0 d3
        ((0.0, 1.0), {"text 5": 5.0, "text 2": 4.0, "text 1": 3.0, "text 0": 1.0, "text 3": 0.0}),
    ],
)
def test_targets_are_the_base_scores_dealt_out_in_the_fused_order_with_positives_on_top(
    weights: tuple[float, float], expected: dict[str, float]
) -> None:
    data = _data()
    before = json.dumps([data.corpus, data.qrels, RUN], sort_keys=True)
    rows = distill_lists(data, RUN, ["q", "none", "zero"], FakeScorer(BASE), rrf_weights=weights, depth=4)
    assert _targets(rows) == expected
    assert sorted(rows.labels) == sorted(BASE[TEXTS[d]] for d in ("d0", "d1", "d2", "d3", "d5"))  # the base's scale
    assert set(rows.query_ids) == {"q"}  # queries without a judged positive are skipped
    assert {p: g for p, g in zip(rows.passages, rows.grades, strict=True) if g} == {"text 5": 2, "text 2": 1}
    assert "text 4" not in rows.passages  # judged 0 and past the depth: not a candidate
    stats = rows.stats
    assert (stats["queries"], stats["positives"], stats["positives_not_retrieved"], stats["candidates"]) == (1, 2, 1, 3)
    assert stats["rows"] == 5 and stats["rrf_weights"] == list(weights)
    # the base's own order d1 d5 d2 d0 d3: the teacher moves 4 rows for the first stage, 3 for the base alone
    assert stats["moved"] == (4 if weights == (1.0, 0.0) else 3)
    assert json.dumps([data.corpus, data.qrels, RUN], sort_keys=True) == before  # nothing of the caller's changed


def test_rrf_at_equal_weights_orders_the_rest_between_the_two_rankings() -> None:
    # d0: ranks 1 and 4 -> 1/61 + 1/64; d1: 2 and 1; d3: 4 and 5: d1, d0, d3 after the positives
    rows = distill_lists(_data(), RUN, ["q"], FakeScorer(BASE), rrf_weights=(1.0, 1.0), depth=4)
    assert [p for p, g in zip(rows.passages, rows.grades, strict=True) if not g] == ["text 1", "text 0", "text 3"]
    assert rows.labels == [5.0, 4.0, 3.0, 1.0, 0.0]


def test_distill_lists_rejects_a_bad_depth() -> None:
    with pytest.raises(ValueError, match="depth must be an integer >= 1"):
        distill_lists(_data(), RUN, ["q"], FakeScorer(BASE), rrf_weights=(1.0, 1.0), depth=0)


def test_the_distill_objective_is_mse_on_each_row_target(tiny_model_dir: str, tiny_two_label_model_dir: str) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.losses import MSELoss

    rows = distill_lists(_data(), RUN, ["q"], FakeScorer(BASE), rrf_weights=(1.0, 0.0), depth=4)
    task = objective("distill", CrossEncoder(tiny_model_dir), tiny_model_dir, rows, [3] * len(rows), 4)
    assert isinstance(task.loss, MSELoss)
    assert task.rows == {"query": ["a"] * 5, "passage": rows.passages, "label": rows.labels}
    assert task.rows_per_step == 4
    with pytest.raises(ValueError, match=r"loss 'distill' trains one relevance logit.*use --loss bce"):
        objective("distill", CrossEncoder(tiny_two_label_model_dir), "two", rows, [3] * len(rows), 4)


def test_distill_training_moves_the_model_to_the_teacher_targets(minilm_model_dir: str, tmp_path: Path) -> None:
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    rows = ft.TrainingPairs()
    for qid, query, answers in (
        ("q1", "capital of france", ["The capital of France is Paris.", "Paris is in France."]),
        ("q2", "largest planet", ["Jupiter is the largest planet.", "Jupiter is a planet."]),
    ):
        texts = [*answers, "Bananas are yellow.", "Cats sleep a lot."]
        for text, target in zip(texts, (4.0, 2.0, -2.0, -4.0), strict=True):
            rows.add(qid, query, text, target)

    def error(model_dir: str | Path) -> float:
        pairs = list(zip(rows.queries, rows.passages, strict=True))
        scores = CrossEncoder(str(model_dir)).predict(pairs, activation_fn=torch.nn.Identity())  # logits, as trained
        return sum((float(s) - t) ** 2 for s, t in zip(scores, rows.labels, strict=True)) / len(rows)

    result = ft.train_cross_encoder(
        minilm_model_dir, rows, tmp_path / "m", batch_size=4, learning_rate=5e-4, epochs=10, seed=1, loss="distill"
    )
    assert result.loss_function == "distill" and result.steps == 20
    assert error(tmp_path / "m") < 0.25 * error(minilm_model_dir)


def test_cli_finetune_distills_and_reports_the_teacher(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = Path(shutil.copytree(DEMO, tmp_path / "demo"))
    out = tmp_path / "o"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(out), "--first-stage", "bm25"]
    argv += ["--loss", "distill", "--dev-fraction", "0", "--negative-depth", "5", "--no-progress"]
    assert main(argv) in (0, 3)
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["loss_function"] == "distill" and report["training"]["steps"] >= 1
    pairs, teacher = report["pairs"], report["teacher"]
    assert pairs["queries"] == len(report["train_queries"]) and pairs["depth"] == 5
    assert pairs["rows"] == pairs["positives"] + pairs["candidates"] and pairs["candidates"] <= 5 * pairs["queries"]
    assert teacher["chosen_on"].startswith(f"chosen on the {len(report['train_queries'])} judged queries trained on")
    assert pairs["rrf_weights"] == teacher["rrf_weights"]
    assert not set(report["eval_queries"]) & set(report["train_queries"])
    assert "MSELoss" in capsys.readouterr().out
    assert (out / "model" / "model.safetensors").exists()


def test_cli_finetune_rejects_distill_for_a_two_output_model_before_any_work(
    tiny_two_label_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["finetune", str(DEMO), "--model", tiny_two_label_model_dir, "--output", str(out), "--loss", "distill"]
    assert main([*argv, "--no-progress"]) == 2
    assert "use --loss bce" in capsys.readouterr().err
    assert not (out / "model").exists()


def test_the_teacher_weights_are_chosen_on_the_judged_queries_trained_on_never_the_dev_queries() -> None:
    from ce_rerank.workflows.finetune._run import _teacher_weights

    data, scorer = _data(), FakeScorer(BASE)
    choice = _teacher_weights(data, RUN, ["q", "zero"], ["zero"], scorer, 4, False)  # type: ignore[arg-type]
    assert choice.queries == ["q"] and choice.chosen_on.startswith("chosen on the 1 judged queries trained on")
    # on "q" the first stage alone puts its positives 3rd and 6th, the base alone 2nd and 3rd
    assert choice.rrf_weights[1] > choice.rrf_weights[0]
    fallback = _teacher_weights(data, RUN, ["zero"], ["zero"], scorer, 4, False)  # type: ignore[arg-type]
    assert fallback.rrf_weights == (1.0, 1.0) and fallback.queries == []


def test_title_queries_distill_each_title_against_its_own_document_on_top(
    tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:

    from ce_rerank import CrossEncoderScorer
    from ce_rerank.workflows.finetune import _run

    trained = spy(monkeypatch, _run, "train_cross_encoder")
    listed = spy(monkeypatch, _run, "distill_lists")
    result = ft.finetune(
        DEMO,
        model=CrossEncoderScorer(tiny_model_dir, dtype="float32"),
        output=tmp_path / "t",
        title_queries=5,
        candidates=20,
        negative_depth=6,
        loss="distill",
        dev_fraction=0,
        plot=False,
    )
    report, rows = result.report, trained[0][1]
    titles = [json.loads(line) for line in (tmp_path / "t" / "title_queries.jsonl").read_text().splitlines()]
    docs = {json.loads(line)["_id"]: json.loads(line) for line in (DEMO / "corpus.jsonl").read_text().splitlines()}
    stats = report["titles"]["pairs"]
    assert stats["queries"] == stats["positives"] == 5 and stats["rows"] == 5 + stats["candidates"]
    assert len(rows) == report["pairs"]["rows"] + stats["rows"]
    for title in titles:
        mine = [i for i, q in enumerate(rows.query_ids) if q == title["_id"]]
        assert 2 <= len(mine) <= 7 and all(rows.queries[i] == title["text"] for i in mine)
        top = max(mine, key=lambda i: rows.labels[i])
        body = docs[title["document"]]["text"]
        assert rows.grades[top] == 1 and rows.passages[top] in body  # its own document, title cut off, on top
        assert sorted(rows.labels[i] for i in mine)[-1] == rows.labels[top]
    assert not any(q.startswith("title-") for q in report["train_queries"])
    # the teacher's first stage ranked the titles' candidates over the documents as the student sees them:
    # every title cut off, so BM25 over the titled documents (what the judged queries use) ranks differently
    (_, judged_run, _, _), (title_data, title_run, title_ids, _) = listed
    assert title_ids == [t["_id"] for t in titles] and set(title_data.queries) == set(title_ids)
    assert all(docs[d]["title"] and docs[d]["title"] not in title_data.corpus[d] for d in docs)
    assert title_run == bm25_run(title_data, top_k=100)
    assert {q: judged_run[q] for q in title_ids} != {q: title_run[q] for q in title_ids}
