"""ce-rerank finetune: the split, pair mining, query generation, training, the gate, and the command.

Everything is offline and fast: tiny random cross-encoders (tests/_models.py), the demo corpus
shipped with the package, and the loopback Ollama stand-in (tests/ollama_server.py).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import json
import os
import shutil
import signal
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeScorer
from ollama_server import FakeOllama, compose_question

import ce_rerank.finetune as ft
from ce_rerank import CrossEncoderScorer, QueryTruncationWarning
from ce_rerank.evaluation import Dataset, DatasetError, evaluate_run, load_beir, read_trec_run
from ce_rerank.workflows.cli import main
from ce_rerank.workflows.evaluation._significance import paired_comparison
from ce_rerank.workflows.finetune._titles import usable_titles

DEMO = Path(__file__).resolve().parents[1] / "ce_rerank" / "data" / "demo"

FINETUNE_API = [
    "CONSISTENCY_TOP",
    "DEV_METRIC",
    "DEV_SIGNIFICANCE",
    "GATE_METRIC",
    "MIN_DEV_QUERIES",
    "MIN_EVAL_QUERIES",
    "MIN_TRAIN_QUERIES",
    "BestStep",
    "DevSet",
    "FinetuneResult",
    "FusionChoice",
    "GateResult",
    "GeneratedQueries",
    "OllamaQueryGenerator",
    "QueryGenerationError",
    "QuerySplit",
    "TrainingPairs",
    "TrainingResult",
    "build_dev_set",
    "build_prompt",
    "check_output",
    "choose_rrf_weights",
    "consistency_filter",
    "finetune",
    "generate_queries",
    "holdout_split",
    "mine_pairs",
    "run_gate",
    "split_queries",
    "train_cross_encoder",
]


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the demo dataset (7 judged queries) that a test may add files to."""
    return Path(shutil.copytree(DEMO, tmp_path / "demo"))


def _pairs(n: int = 12) -> ft.TrainingPairs:
    pairs = ft.TrainingPairs()
    for i in range(n):
        pairs.add(f"q{i % 3}", "capital of france", "The capital of France is Paris." if i % 2 else "Bananas.", i % 2)
    return pairs


def _weights(path: Path) -> dict[str, Any]:
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


# -- public surface ------------------------------------------------------------------------


def test_finetune_public_names_are_pinned_and_the_alias_is_the_workflow() -> None:
    import ce_rerank.workflows.finetune as workflow

    assert sorted(ft.__all__) == sorted(FINETUNE_API)
    assert ft.finetune is workflow.finetune
    from ce_rerank.finetune import finetune  # the documented import

    assert callable(finetune)


# -- split ---------------------------------------------------------------------------------


def test_holdout_split_is_seeded_disjoint_and_covers_every_query() -> None:
    ids = [f"q{i}" for i in range(20)]
    train, held = ft.holdout_split(ids, holdout=0.3, seed=13)
    assert len(held) == 6 and len(train) == 14
    assert not set(train) & set(held) and sorted(train + held) == sorted(ids)
    assert ft.holdout_split(list(reversed(ids)), holdout=0.3, seed=13) == (train, held)  # order does not matter
    assert ft.holdout_split(ids, holdout=0.3, seed=14) != (train, held)


def test_split_without_train_file_holds_out_queries_that_are_never_trained_on(demo: Path) -> None:
    split = ft.split_queries(demo, holdout=0.3, seed=13)
    judged = load_beir(demo).judged_queries
    assert split.method == "holdout"
    assert len(split.eval_queries) == 3 and len(split.train_queries) == 4
    assert not set(split.train_queries) & set(split.eval_queries)
    assert sorted(split.train_queries + split.eval_queries) == sorted(judged)


def test_split_with_a_train_file_drops_training_queries_that_are_also_evaluated(demo: Path) -> None:
    test_rows = (demo / "qrels" / "test.tsv").read_text().splitlines()
    header, rows = test_rows[0], test_rows[1:]
    eval_q = ["q-bees", "q-git", "q-tides"]
    (demo / "qrels" / "test.tsv").write_text("\n".join([header, *(r for r in rows if r.split("\t")[0] in eval_q)]))
    # the training file repeats q-bees: it must be evaluated, never trained on
    train = [r for r in rows if r.split("\t")[0] not in ("q-git", "q-tides")]
    (demo / "qrels" / "train.tsv").write_text("\n".join([header, *train]))
    split = ft.split_queries(demo)
    assert split.method == "files"
    assert split.eval_queries == eval_q
    assert "q-bees" not in split.train_queries and len(split.train_queries) == 4
    assert split.details["dropped_from_training_because_evaluated"] == 1


def test_split_rejects_too_few_judged_queries(demo: Path) -> None:
    with pytest.raises(DatasetError) as err:
        ft.split_queries(demo, holdout=0.2)
    assert str(err.value) == (
        "too few judged queries to evaluate on: 2 held out of qrels/test.tsv (at least 3 needed): judge more "
        "queries, or raise --holdout"
    )


def test_split_rejects_holdout_together_with_a_train_file(demo: Path) -> None:
    shutil.copy(demo / "qrels" / "test.tsv", demo / "qrels" / "train.tsv")
    with pytest.raises(ValueError, match=r"holdout splits qrels/test.tsv when there is no training file"):
        ft.split_queries(demo, eval_split="test", train_split="train", holdout=0.3)


# -- pairs ---------------------------------------------------------------------------------


def _toy() -> tuple[Dataset, dict[str, dict[str, float]]]:
    corpus = {f"d{i}": "x" * (10 + i) for i in range(8)}
    data = Dataset(
        name="toy",
        corpus=corpus,
        queries={"q1": "query one", "q2": "query two"},
        qrels={"q1": {"d1": 1, "d3": 2, "d5": 0}, "q2": {"d2": 1}},
    )
    run = {q: {f"d{i}": float(10 - i) for i in range(8)} for q in ("q1", "q2")}  # d0 best
    return data, run


def test_hard_negatives_never_include_a_judged_positive() -> None:
    data, run = _toy()
    pairs = ft.mine_pairs(data, run, ["q1", "q2"], FakeScorer(), negatives=10, depth=8, negative_filter="none")
    for qid, label, passage in zip(pairs.query_ids, pairs.labels, pairs.passages, strict=True):
        doc = next(d for d, t in data.corpus.items() if t == passage)
        relevant = {d for d, g in data.qrels[qid].items() if g >= 1}
        assert (doc in relevant) == (label == 1.0)
    assert pairs.stats["positives"] == 3
    assert pairs.stats["judged_positives_kept_out_of_pool"] == 3
    assert "x" * 15 in [
        p for p, lab in zip(pairs.passages, pairs.labels, strict=True) if lab == 0.0
    ]  # grade 0: negative


def test_false_negative_filter_drops_candidates_the_base_scores_above_every_positive() -> None:
    data, run = _toy()
    # FakeScorer scores by length: for q2 (positive d2, 12 chars) d3..d7 are longer, so scored above it
    pairs = ft.mine_pairs(data, run, ["q2"], FakeScorer(), negatives=10, depth=8, negative_filter="base")
    negatives = [p for p, lab in zip(pairs.passages, pairs.labels, strict=True) if lab == 0.0]
    assert sorted(len(p) for p in negatives) == [10, 11]
    assert pairs.stats["pool_before_filter"] == 7 and pairs.stats["removed_as_false_negatives"] == 5


def test_long_documents_train_on_the_window_the_scorer_ranks_them_by(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", max_length=48, window_tokens=16)
    long_text = " ".join(["The capital of France is Paris, a city on the Seine."] * 3 + ["Bananas are yellow."] * 8)
    spans = scorer.window_spans("capital of france", [long_text, "Bananas."])
    assert len(spans[0]) > 2 and spans[1] == [(0, len("Bananas."))]
    data = Dataset(
        name="t",
        corpus={"long": long_text, "b": "Bananas."},
        queries={"q": "capital of france"},
        qrels={"q": {"long": 1}},
    )
    pairs = ft.mine_pairs(data, {"q": {"long": 2.0, "b": 1.0}}, ["q"], scorer, negative_filter="none")
    best = scorer.score("capital of france", [long_text]).spans[0]
    assert best in spans[0]
    assert pairs.passages[pairs.labels.index(1.0)] == long_text[best[0] : best[1]]
    assert pairs.stats["windowed_texts"] == 1


# -- training ------------------------------------------------------------------------------


def test_training_is_seeded_and_reproducible(tiny_model_dir: str, tmp_path: Path) -> None:
    a = ft.train_cross_encoder(tiny_model_dir, _pairs(), tmp_path / "a", batch_size=4, learning_rate=1e-3, seed=3)
    ft.train_cross_encoder(tiny_model_dir, _pairs(), tmp_path / "b", batch_size=4, learning_rate=1e-3, seed=3)
    ft.train_cross_encoder(tiny_model_dir, _pairs(), tmp_path / "c", batch_size=4, learning_rate=1e-3, seed=4)
    wa, wb, wc = (_weights(tmp_path / n) for n in "abc")
    assert a.steps == a.planned_steps == 3 and a.stopped == "completed"
    assert all((wa[k] == wb[k]).all() for k in wa)
    assert any((wa[k] != wc[k]).any() for k in wa)


def test_training_batches_group_similar_lengths_and_cover_every_row_once_per_epoch() -> None:
    import random

    from ce_rerank.workflows.finetune._sampler import MEGA_BATCHES, length_grouped

    rng = random.Random(5)
    lengths = [rng.randint(20, 512) for _ in range(1000)]
    sampler = length_grouped(lengths)(list(range(1000)), batch_size=8, drop_last=False, seed=13)
    epochs = []
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 125
        assert sorted(i for b in batches for i in b) == list(range(1000))
        epochs.append(batches)
    padded = sum(len(b) * max(lengths[i] for i in b) for b in epochs[0])
    shuffled = list(range(1000))
    random.Random(0).shuffle(shuffled)
    random_padded = sum(8 * max(lengths[i] for i in shuffled[k : k + 8]) for k in range(0, 1000, 8))
    assert padded < 0.75 * random_padded  # random batches pad to their longest row
    assert epochs[0] != epochs[1]  # a new order every epoch
    sampler.set_epoch(0)
    assert list(sampler) == epochs[0]  # and the same order for the same seed and epoch
    firsts = [lengths[b[0]] for b in epochs[0][:MEGA_BATCHES]]
    assert firsts != sorted(firsts, reverse=True)  # batches are shuffled, not served longest first


def test_the_trainer_draws_its_batches_from_the_length_grouped_sampler(
    tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ce_rerank.workflows.finetune import _sampler, _train

    built: list[Any] = []

    def spy(lengths: Any) -> Any:
        build = _sampler.length_grouped(lengths)

        def record(dataset: Any, **kwargs: Any) -> Any:
            built.append((list(lengths), build(dataset, **kwargs)))
            return built[-1][1]

        return record

    monkeypatch.setattr(_train, "length_grouped", spy)
    pairs = _pairs()
    ft.train_cross_encoder(tiny_model_dir, pairs, tmp_path / "m", batch_size=4, seed=3)
    assert len(built) == 1
    lengths, sampler = built[0]
    assert len(lengths) == len(pairs) and sampler.batch_size == 4


def test_max_minutes_stops_training_and_still_saves(tiny_model_dir: str, tmp_path: Path) -> None:
    result = ft.train_cross_encoder(
        tiny_model_dir, _pairs(40), tmp_path / "m", batch_size=4, epochs=3, max_minutes=1e-6, seed=1
    )
    assert result.stopped == "max-minutes" and result.steps == 1 and result.planned_steps == 30
    assert CrossEncoderScorer(str(tmp_path / "m")).score("capital of france", ["Paris."]).raw


def test_learning_rate_warms_up_and_decays_over_steps_or_the_time_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    from ce_rerank.workflows.finetune import _train

    by_steps = _train._schedule(100, None)
    assert [round(by_steps(s), 6) for s in (0, 5, 10, 55, 100)] == [0.1, 0.5, 1.0, 0.5, 0.0]
    clock = [1000.0]
    monkeypatch.setattr(_train.time, "monotonic", lambda: clock[0])
    by_time = _train._schedule(1000, 1.0)  # 1000 steps planned, one minute of budget
    assert by_time(0) == pytest.approx(0.01)
    clock[0] += 33.0  # 55% of the budget after 2 steps: the time is further than the steps
    assert by_time(2) == pytest.approx(0.5)
    clock[0] += 30.0
    assert by_time(3) == 0.0


def test_ctrl_c_stops_after_the_current_step_and_saves_it(tiny_model_dir: str, tmp_path: Path) -> None:
    from transformers import TrainerCallback

    class PressCtrlC(TrainerCallback):  # type: ignore[misc]
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if state.global_step == 2:
                os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)
    result = ft.train_cross_encoder(
        tiny_model_dir, _pairs(40), tmp_path / "i", batch_size=4, seed=1, callbacks=[PressCtrlC()]
    )
    assert result.stopped == "interrupted" and result.steps in (2, 3)
    assert (tmp_path / "i" / "model.safetensors").is_file()
    assert signal.getsignal(signal.SIGINT) is before  # the user's handler is back


# -- keeping the best step on dev queries -------------------------------------------------


def _dev(texts_per_query: int = 6, queries: int = 2) -> ft.DevSet:
    words = ["capital of france", "yellow fruit", "tallest mountain", "fastest bird"][:queries]
    dev = ft.DevSet(query_ids=[f"q{i}" for i in range(queries)], qrels={})
    for q, query in zip(dev.query_ids, words, strict=True):
        for i in range(texts_per_query):
            dev.queries.append(query)
            dev.texts.append(f"{query} passage {i} " + "word " * i)
            dev.owners.append((q, f"{q}-d{i}"))
    return dev


def test_best_step_keeps_the_weights_of_the_best_dev_evaluation_and_the_base_on_ties() -> None:
    import torch

    dev = _dev()
    dev.qrels = {"q0": {"q0-d0": 1}, "q1": {"q1-d5": 1}}
    model = torch.nn.Linear(2, 1)
    perfect = [6.0 - i for i in range(6)] + [float(i) for i in range(6)]  # both relevant documents first
    worst = [-x for x in perfect]
    outputs = iter([worst, perfect, worst, perfect])  # dev output of the base, then steps 5, 10, 15

    best = ft.BestStep(model, dev, lambda: next(outputs), planned=15, max_minutes=None, evaluations=3)
    best.begin()
    weights = {}
    for step in range(1, 16):
        with torch.no_grad():
            model.weight.fill_(float(step))
        weights[step] = model.weight.clone()
        best.step_end(step)
    best.finish(15)
    assert [e["step"] for e in best.history] == [0, 5, 10, 15]
    assert [e["ndcg@10"] for e in best.history] == [0.3562, 1.0, 0.3562, 1.0]
    assert best.best_step == 5  # step 15 only ties step 5: the earlier one is kept
    assert torch.equal(model.weight, weights[5])
    assert best.summary()["kept"] == "step 5"


def _ranked(dev: ft.DevSet, rank_of_relevant: list[int]) -> list[float]:
    """Dev outputs that put each query's d0 at the given rank (1 = first) and the others in their order."""
    raw = []
    for q, rank in zip(dev.query_ids, rank_of_relevant, strict=True):
        n = sum(owner[0] == q for owner in dev.owners)
        raw += [n - rank + 0.5] + [float(n - i) for i in range(1, n)]  # rank - 1 others score above d0
    return raw


def test_a_best_step_that_is_not_significantly_better_on_dev_is_not_kept() -> None:
    import torch

    dev = _dev(queries=4)
    dev.qrels = {q: {f"{q}-d0": 1} for q in dev.query_ids}
    base_out, step_out = _ranked(dev, [2, 2, 2, 2]), _ranked(dev, [1, 2, 2, 2])  # one query better, three the same
    for significance, kept in ((ft.DEV_SIGNIFICANCE, 0), (1.0, 4)):  # the default (0.05) keeps the base
        model = torch.nn.Linear(2, 1)
        with torch.no_grad():
            model.weight.fill_(0.0)
        outputs = iter([base_out, step_out])
        best = ft.BestStep(
            model, dev, outputs.__next__, planned=4, max_minutes=None, evaluations=1, significance=significance
        )
        best.begin()
        for step in range(1, 5):
            with torch.no_grad():
                model.weight.fill_(float(step))
            best.step_end(step)
        best.finish(4)
        assert [e["ndcg@10"] for e in best.history] == [0.6309, 0.7232]  # the step is better on dev ...
        summary = best.summary()
        assert summary["best_dev_step"] == 4 and summary["test"]["better"] == 1 and summary["test"]["same"] == 3
        assert summary["test"]["p_value"] == pytest.approx(0.391, abs=1e-3)  # ... but by one query of four
        assert best.best_step == kept and summary["kept"] == ("base" if kept == 0 else "step 4")
        assert torch.equal(model.weight, torch.full_like(model.weight, float(kept)))  # the kept step's weights


@pytest.mark.parametrize("value", [0, -0.1, 1.5, True, "0.1"])
def test_the_dev_significance_must_be_a_p_value(value: object, tiny_model_dir: str, tmp_path: Path) -> None:
    import torch

    with pytest.raises(ValueError, match="dev_significance must be a p-value"):
        ft.BestStep(torch.nn.Linear(2, 1), _dev(), list, planned=1, max_minutes=None, evaluations=1, significance=value)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="dev_significance must be a p-value"):
        ft.train_cross_encoder(tiny_model_dir, _pairs(4), tmp_path / "m", dev_significance=value)  # type: ignore[arg-type]


def test_dev_evaluations_fit_a_quarter_of_the_budget_and_their_time_is_not_training_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import torch

    from ce_rerank.workflows.finetune import _select

    clock = [0.0]
    monkeypatch.setattr(_select.time, "monotonic", lambda: clock[0])
    dev = _dev()
    dev.qrels = {"q0": {"q0-d0": 1}, "q1": {"q1-d5": 1}}

    def score() -> list[float]:  # one dev evaluation takes 10 s of a 4-minute budget
        clock[0] += 10.0
        return [0.0] * len(dev)

    best = ft.BestStep(torch.nn.Linear(2, 1), dev, score, planned=10_000, max_minutes=4.0, evaluations=10)
    best.begin()
    assert best.evaluations == 5  # a quarter of 240 s is 60 s: 6 evaluations of 10 s, the base's included
    for step in range(1, 49):  # 5 s of training per step: 48 steps are the whole budget
        clock[0] += 5.0
        best.step_end(step)
    assert [e["step"] for e in best.history] == [0, 10, 20, 29, 39, 48]  # every 48 s of training, not of wall time
    assert best.summary()["evaluations_planned"] == 5 and best.summary()["evaluations_asked"] == 10


def test_training_with_a_dev_set_saves_the_base_when_no_step_beats_it(tiny_model_dir: str, tmp_path: Path) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    from ce_rerank._resolve import native_bfloat16
    from ce_rerank.workflows.finetune._select import model_scorer

    dev = _dev()
    raw = model_scorer(CrossEncoder(tiny_model_dir), dev, bf16=native_bfloat16())()
    for q in dev.query_ids:  # judge the base's own first document relevant: the base is perfect on dev
        top = max((r, d) for (qq, d), r in zip(dev.owners, raw, strict=True) if qq == q)[1]
        dev.qrels[q] = {top: 1}
    result = ft.train_cross_encoder(
        tiny_model_dir, _pairs(40), tmp_path / "m", batch_size=4, learning_rate=1e-2, seed=1, dev=dev, dev_evaluations=2
    )
    assert result.best_step == 0 and result.dev is not None and result.dev["kept"] == "base"
    assert [e["step"] for e in result.dev["evaluations"]] == [0, 5, 10]
    assert result.dev["evaluations"][0]["ndcg@10"] == 1.0
    base, saved = _weights(Path(tiny_model_dir)), _weights(tmp_path / "m")
    assert all(torch_equal(base[k], saved[k]) for k in base)  # trained at 1e-2, yet the base's weights are saved


def torch_equal(a: Any, b: Any) -> bool:
    import torch

    return bool(torch.equal(a, b))


def test_training_without_a_dev_set_saves_the_last_step(tiny_model_dir: str, tmp_path: Path) -> None:
    result = ft.train_cross_encoder(
        tiny_model_dir, _pairs(40), tmp_path / "m", batch_size=4, learning_rate=1e-2, seed=1
    )
    assert result.best_step is None and result.dev is None
    base, saved = _weights(Path(tiny_model_dir)), _weights(tmp_path / "m")
    assert not all(torch_equal(base[k], saved[k]) for k in base)


def test_freeze_layers_keeps_the_embeddings_and_first_layers_at_the_base_weights(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    result = ft.train_cross_encoder(
        tiny_model_dir, _pairs(40), tmp_path / "m", batch_size=4, learning_rate=1e-2, seed=1, freeze_layers=1
    )
    base, saved = _weights(Path(tiny_model_dir)), _weights(tmp_path / "m")
    frozen = [k for k in base if ".embeddings." in k or ".encoder.layer.0." in k]
    trained = [k for k in base if ".encoder.layer.1." in k or "classifier" in k]
    assert frozen and trained and set(frozen).isdisjoint(trained)
    assert all(torch_equal(base[k], saved[k]) for k in frozen)
    assert not any(torch_equal(base[k], saved[k]) for k in trained if k.endswith("weight"))
    assert result.frozen_layers == 1
    assert result.trainable_parameters == sum(v.numel() for v in base.values()) - sum(base[k].numel() for k in frozen)


@pytest.mark.parametrize(
    ("layers", "message"),
    [(2, "freeze_layers=2 would freeze all 2 transformer layers"), (-1, "freeze_layers must be an integer >= 0")],
)
def test_training_rejects_a_freeze_that_leaves_nothing_or_is_negative(
    tiny_model_dir: str, tmp_path: Path, layers: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ft.train_cross_encoder(tiny_model_dir, _pairs(8), tmp_path / "m", batch_size=4, freeze_layers=layers)
    assert not (tmp_path / "m").exists()


def test_the_dev_set_holds_each_dev_querys_candidates_in_the_scorers_windows(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", max_length=48, window_tokens=16)
    long_text = " ".join(["The capital of France is Paris, a city on the Seine."] * 3 + ["Bananas are yellow."] * 8)
    data = Dataset(
        name="t",
        corpus={"long": long_text, "b": "Bananas.", "c": "Cherries."},
        queries={"q": "capital of france", "r": "fruit"},
        qrels={"q": {"long": 1}, "r": {"c": 1}},
    )
    run = {"q": {"long": 2.0, "b": 1.0, "c": 0.5}, "r": {"b": 3.0, "c": 2.0}}
    dev = ft.build_dev_set(data, run, ["q"], scorer, depth=2)
    spans = scorer.window_spans("capital of france", [long_text])[0]
    assert len(spans) > 1
    assert dev.texts == [long_text[a:b] for a, b in spans] + ["Bananas."]
    assert dev.owners == [("q", "long")] * len(spans) + [("q", "b")]
    assert set(dev.queries) == {"capital of france"} and dev.qrels == {"q": {"long": 1}}
    assert dev.run([0.1] * len(spans[:-1]) + [0.9, 0.5]) == {"q": {"long": 0.9, "b": 0.5}}  # best window


def test_dev_queries_are_cut_to_the_query_budget_as_inference_cuts_them(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", max_query_tokens=3)
    long_query = "what is the capital city of france and which river runs through it"
    data = Dataset(name="t", corpus={"a": "Paris is on the Seine."}, queries={"q": long_query}, qrels={"q": {"a": 1}})
    dev = ft.build_dev_set(data, {"q": {"a": 1.0}}, ["q"], scorer, depth=1)
    cut = scorer.scored_query(long_query)
    assert dev.queries == [cut] and cut != long_query and long_query.startswith(cut)
    with pytest.warns(QueryTruncationWarning):  # what score() sends through the model is the same cut query
        scored = scorer.score(long_query, ["Paris is on the Seine."]).raw
    assert scorer.score(cut, ["Paris is on the Seine."]).raw == pytest.approx(scored, abs=1e-6)


def test_training_queries_are_cut_to_the_query_budget_as_inference_cuts_them(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", max_query_tokens=3)
    long_query = "what is the capital city of france and which river runs through it"
    data = Dataset(
        name="t",
        corpus={"a": "Paris is on the Seine.", "b": "Bananas.", "c": "Cherries."},
        queries={"q": long_query},
        qrels={"q": {"a": 1}},
    )
    pairs = ft.mine_pairs(data, {"q": {"a": 3.0, "b": 2.0, "c": 1.0}}, ["q"], scorer, negative_filter="none")
    cut = scorer.scored_query(long_query)
    assert cut != long_query and long_query.startswith(cut)
    assert len(pairs) == 3 and pairs.queries == [cut] * 3


def _with_default_prompt(model_dir: str, out: Path, prompt: str) -> str:
    """A copy of ``model_dir`` that saves ``prompt`` as its default prompt (as a model card's prompts do)."""
    from sentence_transformers.cross_encoder import CrossEncoder

    ce = CrossEncoder(model_dir, device="cpu", prompts={"rank": prompt}, default_prompt_name="rank")
    ce.save_pretrained(str(out))
    return str(out)


def test_training_sends_the_prompt_scoring_sends(tiny_model_dir: str, tmp_path: Path) -> None:
    prompt = "rank this: "
    prefixed = ft.TrainingPairs()
    for q, t, label in zip(_pairs().queries, _pairs().passages, _pairs().labels, strict=True):
        prefixed.add("q", prompt + q, t, label)
    kw: dict[str, Any] = {"batch_size": 4, "learning_rate": 1e-2, "seed": 3}
    ft.train_cross_encoder(tiny_model_dir, prefixed, tmp_path / "prefixed", prompt="", **kw)
    ft.train_cross_encoder(tiny_model_dir, _pairs(), tmp_path / "prompted", prompt=prompt, **kw)
    ft.train_cross_encoder(tiny_model_dir, _pairs(), tmp_path / "plain", **kw)  # the tiny model saves no prompt
    defaulted = _with_default_prompt(tiny_model_dir, tmp_path / "with-default", prompt)
    ft.train_cross_encoder(defaulted, _pairs(), tmp_path / "defaulted", **kw)  # None: the model's default prompt
    want, plain = _weights(tmp_path / "prefixed"), _weights(tmp_path / "plain")
    for name in ("prompted", "defaulted"):  # the text-pair model reads the prompt before the query
        got = _weights(tmp_path / name)
        assert all(torch_equal(want[k], got[k]) for k in want), name
    assert not all(torch_equal(want[k], plain[k]) for k in want)  # the prompt changed what was trained on
    ft.train_cross_encoder(defaulted, _pairs(), tmp_path / "off", prompt="", **kw)  # "": the default turned off
    off = _weights(tmp_path / "off")
    assert all(torch_equal(plain[k], off[k]) for k in plain)


def test_a_chat_template_reranker_trains_with_its_default_prompt_unless_told_otherwise(tmp_path: Path) -> None:
    from _models import RERANKER_PROMPTS, build_tiny_llm_reranker

    model = str(build_tiny_llm_reranker(tmp_path / "m", default_prompt_name="code", seed=1))
    kw: dict[str, Any] = {"batch_size": 4, "learning_rate": 1e-3, "seed": 3}
    for name, prompt in (("default", None), ("named", RERANKER_PROMPTS["code"]), ("off", "")):
        ft.train_cross_encoder(model, _pairs(), tmp_path / name, prompt=prompt, **kw)
    default, named, off = (_weights(tmp_path / n) for n in ("default", "named", "off"))
    assert all(torch_equal(default[k], named[k]) for k in default)  # the system message the scorer sends
    assert not all(torch_equal(default[k], off[k]) for k in default)


def test_dev_scores_are_the_scorers_scores_prompt_included(tiny_model_dir: str) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    from ce_rerank.workflows.finetune._select import model_scorer

    texts = ["Paris is on the Seine.", "Bananas are yellow.", "Cherries."]
    data = Dataset(
        name="t",
        corpus={f"d{i}": t for i, t in enumerate(texts)},
        queries={"q": "capital of france"},
        qrels={"q": {"d0": 1}},
    )
    run = {"q": {"d0": 3.0, "d1": 2.0, "d2": 1.0}}
    for prompt in (None, "rank this: "):
        scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", backend="torch", prompt=prompt)
        dev = ft.build_dev_set(data, run, ["q"], scorer, depth=3)
        assert dev.prompt == prompt
        got = model_scorer(CrossEncoder(tiny_model_dir, device="cpu"), dev, bf16=False)()
        assert got == pytest.approx(scorer.score("capital of france", texts).raw, abs=1e-5)
    plain = CrossEncoderScorer(tiny_model_dir, dtype="float32", backend="torch").score("capital of france", texts)
    assert max(abs(a - b) for a, b in zip(got, plain.raw, strict=True)) > 1e-4  # the prompt was scored


def test_the_tuned_model_is_scored_with_every_setting_of_the_base(tiny_model_dir: str) -> None:
    from ce_rerank.workflows.finetune._run import _like

    given: dict[str, Any] = {
        "device": "cpu",
        "dtype": "float32",
        "batch_size": 7,
        "max_batch_tokens": 999,
        "max_length": 40,
        "long_text": "truncate",
        "window_tokens": 20,
        "window_stride": 5,
        "max_windows": 3,
        "quantize": "none",
        "backend": "torch",
        "trust_remote_code": True,
        "prompt": "rank this: ",
        "max_query_tokens": 6,
    }
    settings = set(inspect.signature(CrossEncoderScorer.__init__).parameters) - {"self", "model", "cache_size"}
    assert settings == set(given) | {"prompt_name"}  # a new setting must be added here, and to _like
    base = CrossEncoderScorer(tiny_model_dir, **given)
    tuned = _like(base, "elsewhere")
    assert tuned.model_name == "elsewhere"
    for name in settings:
        assert getattr(tuned, name) == getattr(base, name), name
    named = _like(CrossEncoderScorer(tiny_model_dir, prompt_name="rank"), "elsewhere")
    assert named.prompt_name == "rank" and named.prompt is None


def test_saved_model_loads_in_both_adapters_and_scores_like_the_trained_weights(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
    from transformers import TrainerCallback

    from langchain_ce_rerank import CrossEncoderRerank as LCRerank
    from llamaindex_ce_rerank import CrossEncoderRerank as LIRerank

    query, texts = "capital of france", ["The capital of France is Paris.", "Bananas are yellow.", "Python tests."]
    seen: dict[str, list[float]] = {}

    class Capture(TrainerCallback):  # type: ignore[misc]
        def on_train_end(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
            import torch

            tok = model.tokenizer
            model.eval()  # as the adapters run it: no dropout
            with torch.inference_mode():
                feats = tok([query] * len(texts), texts, padding=True, return_tensors="pt")
                seen["trained"] = model.model(**feats).logits[:, 0].float().tolist()

    out = tmp_path / "tuned"
    ft.train_cross_encoder(
        tiny_model_dir, _pairs(), out, batch_size=4, learning_rate=1e-2, seed=2, callbacks=[Capture()]
    )
    base = CrossEncoderScorer(tiny_model_dir, dtype="float32").score(query, texts).raw
    docs = LCRerank(model=str(out), top_n=None, dtype="float32").compress_documents(
        [Document(page_content=t, id=str(i)) for i, t in enumerate(texts)], query
    )
    lc = {int(d.id): d.metadata["ce_raw_score"] for d in docs}  # type: ignore[arg-type]
    nodes = LIRerank(model=str(out), top_n=None, dtype="float32", metadata_mode=MetadataMode.NONE).postprocess_nodes(
        [NodeWithScore(node=TextNode(text=t, id_=str(i)), score=1.0) for i, t in enumerate(texts)], query_str=query
    )
    li = {int(n.node.node_id): n.node.metadata["ce_raw_score"] for n in nodes}
    for i, want in enumerate(seen["trained"]):
        assert lc[i] == pytest.approx(want, abs=1e-4) and li[i] == pytest.approx(want, abs=1e-4)
    assert any(abs(b - t) > 1e-3 for b, t in zip(base, seen["trained"], strict=True))  # training changed it


# -- the gate ------------------------------------------------------------------------------


def test_paired_comparison_counts_changes_and_matches_scipy() -> None:
    from scipy.stats import ttest_rel

    a = {"1": {"ndcg@10": 0.2}, "2": {"ndcg@10": 0.5}, "3": {"ndcg@10": 0.4}, "4": {"ndcg@10": 0.9}}
    b = {"1": {"ndcg@10": 0.6}, "2": {"ndcg@10": 0.5}, "3": {"ndcg@10": 0.3}, "4": {"ndcg@10": 1.0}}
    c = paired_comparison(a, b)
    assert (c.better, c.worse, c.same) == (2, 1, 1)
    want = ttest_rel([0.6, 0.5, 0.3, 1.0], [0.2, 0.5, 0.4, 0.9])
    assert c.p_value == pytest.approx(want.pvalue) and c.delta == pytest.approx(0.1)
    same = paired_comparison(a, a)
    assert (same.p_value, same.t, same.same) == (1.0, 0.0, 4)


def test_gate_passes_only_a_reranker_better_than_the_base_on_held_out_ndcg(capsys: pytest.CaptureFixture[str]) -> None:
    data = load_beir(DEMO)
    run = {q: {d: 1.0 for d in data.corpus} for q in data.judged_queries}
    relevant = {d for q in data.judged_queries for d, g in data.qrels[q].items() if g >= 1}
    good = FakeScorer({data.corpus[d]: 1e6 for d in relevant})  # judged documents first (others: their length)
    bad = FakeScorer({data.corpus[d]: -100.0 for d in relevant})  # judged documents last
    kwargs: dict[str, Any] = {"first_stage_name": "flat", "candidates": 100}
    up = ft.run_gate(data, run, data.judged_queries, bad, good, **kwargs)
    down = ft.run_gate(data, run, data.judged_queries, good, bad, **kwargs)
    assert up.passed and up.verdict.startswith("tuned reranker is better than the base: held-out NDCG@10")
    assert not down.passed and "NOT better than the base" in down.verdict and down.verdict.endswith("do not ship it")
    assert up.metrics["tuned"]["ndcg@10"] > up.metrics["base"]["ndcg@10"]
    # with progress on, each pass's bar says which model it scores (they used to read alike)
    capsys.readouterr()
    ft.run_gate(data, run, data.judged_queries, good, bad, progress=True, **kwargs)
    err = capsys.readouterr().err
    assert "held-out queries, base model" in err and "held-out queries, tuned model" in err


# -- the command ---------------------------------------------------------------------------


def test_cli_finetune_writes_model_report_and_runs_and_exits_3_when_not_better(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned"
    argv = [
        "finetune",
        str(demo),
        "--model",
        tiny_model_dir,
        "--output",
        str(out),
        "--candidates",
        "20",
        "--learning-rate",
        "1e-12",
        "--fusion",
        "rrf",
        "--no-progress",
        "--threads",
        "1",
    ]
    status = main(argv)
    report = json.loads((out / "report.json").read_text())
    # a learning rate of 1e-12 leaves the weights where they were: not better, so exit 3
    printed = capsys.readouterr().out
    assert status == 3 and report["passed"] is False and "NOT better" in printed
    # what to try next: the demo's titles (fusion was on already)
    hints = [line for line in printed.splitlines() if line.startswith("to try next: ")]
    assert len(hints) == 1 and hints[0].startswith(f"to try next: --title-queries {usable_titles(demo)} ")
    for key in ("first_stage", "base", "tuned", "train_queries", "eval_queries", "verdict"):
        assert key in report
    assert set(report["tuned"]) == {"ndcg@10", "mrr@10", "recall@100", "map"}
    assert not set(report["train_queries"]) & set(report["eval_queries"])
    assert report["training"]["steps"] >= 1 and report["pairs"]["pairs"] > 0
    assert report["eval_queries_without_candidates"] == 0
    data = load_beir(demo)
    for name in ("first_stage", "base", "tuned", "tuned+rrf"):
        run = read_trec_run(out / f"{name}.run")
        assert set(run) == set(report["eval_queries"])
        means, _ = evaluate_run(data.qrels, run, query_ids=report["eval_queries"])
        assert means["ndcg@10"] == pytest.approx(report[name]["ndcg@10"], abs=1e-6)  # anyone can recompute it
    assert (out / "ndcg10_per_query.png").is_file()
    assert CrossEncoderScorer(str(out / "model")).score("bees", ["bees dance"]).raw


def test_next_steps_name_only_what_the_run_did_not_use(demo: Path, tmp_path: Path) -> None:
    from ce_rerank.workflows.cli._finetune import _next_steps

    titled = usable_titles(demo)
    assert 0 < titled < len(load_beir(demo).corpus)  # the demo has some titles too short to be queries
    report: dict[str, Any] = {
        "first_stage_name": "bm25",
        "fusion": None,
        "titles": None,
        "first_stage": {"ndcg@10": 0.5},
        "base": {"ndcg@10": 0.3},
        "training": {"learning_rate": 2e-5},
    }
    args = argparse.Namespace(dataset=str(demo), first_stage="bm25")
    plain = _next_steps(args, report)
    assert [s.split()[:2] for s in plain] == [["--fusion", "rrf"], ["--title-queries", str(titled)]]
    used = {**report, "fusion": {"method": "rrf"}, "titles": {"used": 3}}
    # titles at the default rate from a base below the first stage: the higher rate of round 20
    assert [s.split()[:2] for s in _next_steps(args, used)] == [["--learning-rate", "5e-5:"]]
    assert _next_steps(args, {**used, "training": {"learning_rate": 5e-5}}) == []
    assert _next_steps(args, {**used, "base": {"ndcg@10": 0.6}}) == []  # a base above the first stage
    # a run file cannot retrieve for titles; a corpus without titles has none to offer
    assert len(_next_steps(argparse.Namespace(dataset=str(demo), first_stage="run:x.run"), report)) == 1
    bare = tmp_path / "bare"  # no title, and no sentence end to take a first sentence from
    no_stops = str.maketrans("", "", ".?!")
    shutil.copytree(demo, bare)
    rows = [json.loads(line) for line in (demo / "corpus.jsonl").read_text().splitlines()]
    bare_rows = [json.dumps({**r, "title": "", "text": r["text"].translate(no_stops)}) + "\n" for r in rows]
    (bare / "corpus.jsonl").write_text("".join(bare_rows))
    assert usable_titles(bare) == 0
    assert len(_next_steps(argparse.Namespace(dataset=str(bare), first_stage="bm25"), report)) == 1
    # the dev test kept the base on a handful of dev queries after a rise: a larger dev set (round 21)
    test = {"delta": 0.2153, "p_value": 0.16}
    missed = {**used, "base": {"ndcg@10": 0.6}, "training": {"learning_rate": 5e-5}}
    missed["training"]["dev"] = {"queries": 5, "kept": "base", "test": test}
    few = argparse.Namespace(dataset=str(demo), first_stage="bm25", dev_fraction=0.2)
    (hint,) = _next_steps(few, missed)
    assert hint.startswith("--dev-fraction 0.5: the dev test kept the base on only 5 dev queries (best step +0.2153")
    assert _next_steps(argparse.Namespace(**{**vars(few), "dev_fraction": 0.5}), missed) == []  # already used
    for dev in ({"queries": 27}, {"kept": "step 221"}, {"test": {"delta": -0.01, "p_value": 0.5}}):
        other = {**missed, "training": {**missed["training"], "dev": {**missed["training"]["dev"], **dev}}}
        assert _next_steps(few, other) == []  # enough dev queries; a step kept; no rise to miss
    assert _next_steps(few, {**missed, "training": {"learning_rate": 5e-5, "dev": None}}) == []  # no dev set


def test_cli_finetune_scores_base_and_tuned_with_the_same_prompt_and_query_budget(
    tiny_model_dir: str, demo: Path, tmp_path: Path
) -> None:
    out = tmp_path / "tuned"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(out), "--candidates", "10"]
    flags = ["--prompt", "rank this: ", "--max-query-tokens", "3", "--dtype", "float32", "--learning-rate", "1e-12"]
    with pytest.warns(QueryTruncationWarning):  # the demo's questions are longer than 3 tokens
        main([*argv, *flags, "--no-progress", "--threads", "1"])
    base, tuned = read_trec_run(out / "base.run"), read_trec_run(out / "tuned.run")
    # a learning rate of 1e-12 leaves the weights where they were: scored alike, the runs are the same
    assert set(base) == set(tuned) and all(set(base[q]) == set(tuned[q]) for q in base)
    for q in base:
        assert [tuned[q][d] for d in base[q]] == pytest.approx(list(base[q].values()), abs=1e-5)
    plain = CrossEncoderScorer(tiny_model_dir, dtype="float32")
    q = next(iter(base))
    query = load_beir(demo).queries[q]
    docs = sorted(base[q], key=base[q].get, reverse=True)[:3]  # reranked: scored by their raw logit
    corpus = load_beir(demo).corpus
    unprompted = plain.score(query, [corpus[d] for d in docs]).raw
    assert max(abs(a - base[q][d]) for a, d in zip(unprompted, docs, strict=True)) > 1e-4  # the settings mattered


def _more_queries(demo: Path, copies: int) -> None:
    """Each demo query ``copies`` times (reworded ids and text, same judgments): enough for a dev set."""
    queries = [json.loads(line) for line in (demo / "queries.jsonl").read_text().splitlines()]
    rows = (demo / "qrels" / "test.tsv").read_text().splitlines()
    with (demo / "queries.jsonl").open("a") as fh:
        for k in range(1, copies):
            for q in queries:
                fh.write(json.dumps({"_id": f"{q['_id']}-{k}", "text": f"{q['text']} ({k})"}) + "\n")
    extra = [f"{r.split(chr(9))[0]}-{k}\t" + "\t".join(r.split("\t")[1:]) for k in range(1, copies) for r in rows[1:]]
    (demo / "qrels" / "test.tsv").write_text("\n".join([*rows, *extra]) + "\n")


def test_cli_finetune_keeps_dev_queries_out_of_training_and_evaluation_and_reports_the_curve(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _more_queries(demo, 3)  # 21 judged queries: 7 held out, 14 for training of which 3 are dev queries
    out = tmp_path / "tuned"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(out), "--candidates", "10"]
    flags = ["--learning-rate", "1e-3", "--dev-evals", "2", "--freeze-layers", "1", "--no-progress", "--threads", "1"]
    status = main([*argv, *flags])
    report = json.loads((out / "report.json").read_text())
    assert report["training"]["frozen_layers"] == 1
    train, dev, held = set(report["train_queries"]), set(report["dev_queries"]), set(report["eval_queries"])
    assert len(held) == 7 and len(dev) == 3 and len(train) == 11
    assert not train & dev and not train & held and not dev & held
    assert report["pairs"]["queries"] == 11  # pairs are mined for the trained queries only
    curve = report["dev"]["evaluations"]
    assert curve[0]["step"] == 0 and curve[-1]["step"] == report["training"]["steps"] and len(curve) == 3
    assert report["dev"]["best_step"] == report["training"]["best_step"]
    assert report["dev"]["best_step"] in [e["step"] for e in curve]
    printed = capsys.readouterr().out
    assert "dev (3 training queries kept out, ndcg@10 by step): 0: " in printed
    assert "embeddings and first 1 layer frozen" in printed
    assert status in (0, 3)
    if report["dev"]["kept"] == "base":
        assert "so the saved model is the base" in report["verdict"]
    test = report["dev"]["test"]  # the best step against the base on dev, when a step beat the base there
    if test is not None:
        assert report["dev"]["best_dev_step"] > 0 and test["queries"] == 3
        assert f"paired t-test p={test['p_value']:.3g}" in printed


def test_cli_finetune_says_why_there_is_no_dev_set(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(out), "--candidates", "10"]
    main([*argv, "--no-progress", "--threads", "1"])
    report = json.loads((out / "report.json").read_text())
    assert report["dev_queries"] == [] and len(report["train_queries"]) == 4
    reason = (
        "4 judged training queries are too few for a dev set of 0.2 (at least 3 dev queries and 3 to train on): "
        "all are trained on and the last step is saved"
    )
    assert report["dev"] == {"queries": 0, "reason": reason}
    assert f"no dev set: {reason}" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["finetune", str(demo), "--model", tiny_model_dir, "--output", str(tmp_path / "x"), "--dev-fraction", "1"])
    assert exit_info.value.code == 2
    assert "expected a fraction >= 0 and < 1 (0: no dev queries), got '1'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(
            [
                "finetune",
                str(demo),
                "--model",
                tiny_model_dir,
                "--output",
                str(tmp_path / "y"),
                "--dev-significance",
                "0",
            ]
        )
    assert exit_info.value.code == 2 and not (tmp_path / "y").exists()
    assert "expected a p-value > 0 and <= 1 (e.g. 0.05; 1: no test), got '0'" in capsys.readouterr().err


def test_the_clis_dev_significance_default_is_the_workflows() -> None:
    from ce_rerank.workflows.cli import build_parser
    from ce_rerank.workflows.finetune._select import DEV_SIGNIFICANCE

    args = build_parser().parse_args(["finetune", "d", "--model", "m", "--output", "o"])
    assert (
        args.dev_significance
        == DEV_SIGNIFICANCE
        == inspect.signature(ft.finetune).parameters["dev_significance"].default
    )


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--first-stage", "splade"], "unknown first stage 'splade': use bm25, dense:MODEL"),
        (["--first-stage", "run:/nonexistent.run"], "first stage run:/nonexistent.run: no such file"),
        (["--generate-queries", "openai:gpt"], "unknown query generator 'openai:gpt': use ollama:MODEL"),
        (["--holdout", "0.1"], "too few judged queries to evaluate on: 1 held out of qrels/test.tsv"),
        (["--eval-split", "dev"], "has no qrels/dev.tsv: a BEIR-layout dataset needs it (qrels)"),
    ],
)
def test_cli_finetune_rejects_bad_input_before_loading_the_model(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    # --model names no model: reaching the model would fail with another message
    status = main(
        ["finetune", str(demo), "--model", str(tmp_path / "no-model"), "--output", str(tmp_path / "o"), *extra]
    )
    assert status == 2
    assert message in capsys.readouterr().err


def test_cli_finetune_rejects_unusable_output_folders_before_any_work(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "report.json").write_text("{}")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    cases = {
        str(taken): "is not empty: give a new or empty folder (finetune never overwrites a model)",
        str(a_file): "is a file: give a folder",
        str(a_file / "sub"): "cannot write to the output folder",
    }
    for output, message in cases.items():
        assert main(["finetune", str(demo), "--model", str(tmp_path / "none"), "--output", output]) == 2
        assert message in capsys.readouterr().err
    assert (taken / "report.json").read_text() == "{}"


def test_cli_finetune_rejects_freezing_every_layer_before_mining_or_training(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(tmp_path / "o"), "--freeze-layers", "2"]
    assert main([*argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "freeze_layers=2 would freeze all 2 transformer layers" in err and "use at most 1" in err
    assert not (tmp_path / "o" / "model").exists()


def test_cli_finetune_without_qrels_names_the_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "noqrels"
    data.mkdir()
    for name in ("corpus.jsonl", "queries.jsonl"):
        shutil.copy(DEMO / name, data / name)
    assert main(["finetune", str(data), "--model", "m", "--output", str(tmp_path / "o")]) == 2
    assert "has no qrels/test.tsv" in capsys.readouterr().err


# -- generated queries ---------------------------------------------------------------------


def test_the_consistency_filter_keeps_questions_whose_source_the_base_ranks_in_its_top() -> None:
    from ce_rerank.workflows.finetune._generate import GeneratedQueries, consistency_filter

    corpus = {"src1": "s1", "src2": "s2", "src3": "s3", "a": "a", "b": "b", "c": "c", "d": "d"}
    data = Dataset(name="t", corpus=corpus, queries={}, qrels={})
    # the base's raw score of each text: among its candidates src1 ranks 1st, src2 2nd, src3 5th
    scorer = FakeScorer({"s1": 9.0, "s2": 4.5, "s3": 1.0, "a": 5.0, "b": 4.0, "c": 3.0, "d": 2.0})
    run = {
        "g1": {"a": 3.0, "b": 2.0, "c": 1.0},
        "g2": {"a": 3.0, "src2": 2.0, "b": 1.0},
        "g3": {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0},
    }
    generated = GeneratedQueries(
        queries={"g1": "q1", "g2": "q2", "g3": "q3"},
        sources={"g1": "src1", "g2": "src2", "g3": "src3"},
        passages={"g1": "s1", "g2": "s2", "g3": "s3"},
        stats={"generated": 3},
    )
    kept = consistency_filter(generated, data, run, scorer, depth=30, top=3)
    assert kept.queries == {"g1": "q1", "g2": "q2"}
    assert kept.sources == {"g1": "src1", "g2": "src2"} and set(kept.passages) == {"g1", "g2"}
    assert (kept.stats["kept_by_consistency_filter"], kept.stats["dropped_by_consistency_filter"]) == (2, 1)
    assert consistency_filter(generated, data, run, scorer, depth=30, top=5).queries.keys() == {"g1", "g2", "g3"}


def test_generated_queries_train_the_model_and_evaluation_stays_on_judged_queries(
    tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The tiny base model is random: which questions it ranks in its top 3 hangs on near-ties that thread
    # counts can flip. The filter's own rule is tested above; here it keeps every candidate rank.
    from ce_rerank.workflows.finetune import _run

    monkeypatch.setattr(_run, "consistency_filter", functools.partial(_run.consistency_filter, top=10_000))
    with FakeOllama(embed_models=()) as server:
        result = ft.finetune(
            DEMO,
            model=CrossEncoderScorer(tiny_model_dir, dtype="float32"),
            output=tmp_path / "gen",
            generate_queries="ollama:llama3.2",
            generate_count=12,
            candidates=20,
            ollama_host=server.host,
            plot=False,
        )
        prompts = [r.body["prompt"] for r in server.calls("/api/generate")]
    report = result.report
    assert len(prompts) == 12 and all(p.count("Question:") == 4 for p in prompts)  # 3 shots + the ask
    assert report["eval_queries"] == sorted(load_beir(DEMO).judged_queries)  # every judged query evaluated
    assert report["train_queries"] and all(q.startswith("gen-") for q in report["train_queries"])
    gen = report["generated"]
    assert gen["generated"] == 12
    assert gen["kept_by_consistency_filter"] + gen["dropped_by_consistency_filter"] == 12
    assert gen["kept_by_consistency_filter"] == len(report["train_queries"])
    assert report["dev_queries"] == [] and "no judged training queries" in report["dev"]["reason"]
    rows = [json.loads(line) for line in (tmp_path / "gen" / "generated_queries.jsonl").read_text().splitlines()]
    assert [r["_id"] for r in rows] == report["train_queries"]
    assert all(r["text"] == compose_question(r["passage"]) for r in rows)


def test_query_generation_reports_a_server_error_with_ollamas_message_cut_short() -> None:
    with FakeOllama(embed_models=()) as server:
        generator = ft.OllamaQueryGenerator("llama3.2", host=server.host)
        server.fail(500, "model runner crashed: " + "x" * 2000, path="/api/generate")
        with pytest.raises(ft.QueryGenerationError) as info:
            generator.question("A passage about wind tunnels.")
        generator.close()
    message = str(info.value)
    assert message.startswith(f"Ollama at http://{server.host} answered 500 on /api/generate: model runner crashed: x")
    assert message.endswith("x...") and len(message) < 700  # the server's text is cut, not pasted whole


def test_query_generation_names_the_fix_when_ollama_lacks_the_model_or_is_not_there(
    demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv = ["finetune", str(demo), "--model", str(tmp_path / "none"), "--generate-queries", "ollama:nope"]
    with FakeOllama(embed_models=()) as server:
        monkeypatch.setenv("OLLAMA_HOST", server.host)
        assert main([*argv, "--output", str(tmp_path / "a")]) == 2
        assert "does not have 'nope' (it has: llama3.2): run `ollama pull nope`" in capsys.readouterr().err
        assert not server.calls("/api/generate")
    monkeypatch.setenv("OLLAMA_HOST", server.host)  # stopped now: nothing listens there
    assert main([*argv, "--output", str(tmp_path / "b")]) == 2
    assert f"could not reach Ollama at http://{server.host}" in capsys.readouterr().err
