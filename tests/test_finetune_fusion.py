"""ce-rerank finetune --fusion rrf: RRF weights chosen on judged queries the reranker was not trained on.

Offline and fast: the demo corpus, table scorers (tests/conftest.py) and tiny random cross-encoders.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
from conftest import FakeScorer

import ce_rerank.finetune as ft
from ce_rerank import Reranker, Scores
from ce_rerank.evaluation import Dataset, evaluate_run, load_beir, read_trec_run
from ce_rerank.workflows.cli import main
from ce_rerank.workflows.finetune import _fusion

DEMO = Path(__file__).resolve().parents[1] / "ce_rerank" / "data" / "demo"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    return Path(shutil.copytree(DEMO, tmp_path / "demo"))


class JudgeScorer:
    """Scores a (query, text) pair by its judgment: ``sign`` for judged relevant, 0 otherwise."""

    name = "judge"

    def __init__(self, data: Dataset, sign: float) -> None:
        self.relevant = {
            (data.queries[q], data.corpus[d]) for q in data.judged_queries for d, g in data.qrels[q].items() if g >= 1
        }
        self.sign = sign

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return Scores.from_raw([self.sign * ((query, t) in self.relevant) for t in texts])

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        return self.score(query, texts)


def _systems(data: Dataset) -> tuple[dict[str, dict[str, float]], JudgeScorer, JudgeScorer]:
    """A first stage with each query's judged documents last, a reranker that puts them first, and one that
    puts them last."""
    run = {
        q: {d: (0.0 if data.qrels.get(q, {}).get(d, 0) >= 1 else 1.0) - i * 1e-6 for i, d in enumerate(data.corpus)}
        for q in data.queries
    }
    return run, JudgeScorer(data, 1.0), JudgeScorer(data, -1.0)


def test_the_weights_go_where_the_judgments_say_reranker_alone_or_first_stage_alone() -> None:
    data = load_beir(DEMO)
    qids = data.judged_queries
    run, good, bad = _systems(data)
    trusted = ft.choose_rrf_weights(data, run, qids, good, candidates=100, chosen_on="chosen on all")
    share = trusted.rrf_weights[1]
    assert share > 0.5 and trusted.rrf_weights[0] == pytest.approx(1 - share) and trusted.queries == qids
    assert trusted.grid[f"{share:g}"] == trusted.grid["1"] == pytest.approx(1.0)  # as good as the reranker alone
    assert all(v < 1 - 1e-9 for s, v in trusted.grid.items() if abs(float(s) - 0.5) < share - 0.5)  # ties: nearest 0.5
    assert trusted.grid["0"] < 0.5  # the first stage alone ranks them last
    # reversed first stage: now the first stage is right and the reranker wrong
    flipped = {q: {d: -s for d, s in docs.items()} for q, docs in run.items()}
    distrusted = ft.choose_rrf_weights(data, flipped, qids, bad, candidates=100, chosen_on="chosen on all")
    low = distrusted.rrf_weights[1]
    assert low < 0.5 and distrusted.grid[f"{low:g}"] == max(distrusted.grid.values()) == distrusted.grid["0"]
    assert distrusted.grid["1"] < 0.5  # the reranker alone ranks them last
    assert distrusted.as_dict()["queries"] == len(qids) and distrusted.as_dict()["metric"] == "ndcg@10"


def test_each_grid_value_is_the_ndcg_of_the_cores_fusion_at_those_weights_and_ties_go_to_equal_weights() -> None:
    data = load_beir(DEMO)
    qids = data.judged_queries
    run, _, _ = _systems(data)
    mixed = FakeScorer({t: float(i % 7) for i, t in enumerate(data.corpus.values())})  # neither right nor wrong
    choice = ft.choose_rrf_weights(data, run, qids, mixed, candidates=100, chosen_on="chosen on all")
    for share in (0.0, 0.3, 1.0):
        reranker = Reranker(mixed, top_n=None, fusion="rrf", rrf_weights=(1 - share, share))
        as_run = {}
        for q in qids:
            docs = sorted(run[q], key=lambda d, q=q: -run[q][d])  # first-stage order
            ranked = reranker.rerank(data.queries[q], [data.corpus[d] for d in docs])
            as_run[q] = {docs[c.index]: -float(i) for i, c in enumerate(ranked)}
        assert choice.grid[f"{share:g}"] == pytest.approx(
            evaluate_run(data.qrels, as_run, query_ids=qids)[0]["ndcg@10"]
        )
    assert max(choice.grid.values()) == pytest.approx(choice.grid[f"{choice.rrf_weights[1]:g}"])
    # a reranker that orders as the first stage does: every share gives the same ranking, and the tie goes to
    # equal weights
    echo = FakeScorer({data.corpus[d]: float(-i) for i, d in enumerate(data.corpus)})
    same = {q: {d: float(-i) for i, d in enumerate(data.corpus)} for q in qids}
    tie = ft.choose_rrf_weights(data, same, qids, echo, candidates=100, chosen_on="chosen on all")
    assert len(set(tie.grid.values())) == 1 and tie.rrf_weights == (0.5, 0.5)


def test_weights_are_chosen_on_queries_the_reranker_was_not_trained_on(monkeypatch: pytest.MonkeyPatch) -> None:
    data = load_beir(DEMO)
    run, good, bad = _systems(data)
    seen: list[tuple[Any, list[str]]] = []
    real = _fusion.choose_rrf_weights

    def spy(dataset: Any, first_stage: Any, query_ids: Any, scorer: Any, **kwargs: Any) -> ft.FusionChoice:
        seen.append((scorer, list(query_ids)))
        return real(dataset, first_stage, query_ids, scorer, **kwargs)

    monkeypatch.setattr(_fusion, "choose_rrf_weights", spy)
    train, dev = data.judged_queries[:5], data.judged_queries[5:6]
    kwargs: dict[str, Any] = {"judged_training": train, "dev_ids": dev, "base": bad, "tuned": good, "candidates": 100}
    stepped = _fusion.fusion_choices("learn", data, run, trained=True, progress=False, **kwargs)
    assert seen == [(bad, train), (good, dev)]  # the base on training and dev queries, the trained step on dev only
    assert stepped["tuned"].rrf_weights == (0.0, 1.0) and "1 dev queries" in stepped["tuned"].chosen_on
    seen.clear()
    kept_base = _fusion.fusion_choices("learn", data, run, trained=False, progress=False, **kwargs)
    assert seen == [(bad, train)] and kept_base["tuned"] is kept_base["base"]  # the base was saved: one choice
    seen.clear()
    no_dev = _fusion.fusion_choices("learn", data, run, trained=True, progress=False, **{**kwargs, "dev_ids": []})
    assert no_dev["tuned"].rrf_weights == (1.0, 1.0) and "no dev set" in no_dev["tuned"].chosen_on
    given = _fusion.fusion_choices((0.7, 0.3), data, run, trained=True, progress=False, **kwargs)
    assert given["base"].rrf_weights == given["tuned"].rrf_weights == (0.7, 0.3) and len(seen) == 1


@pytest.mark.parametrize(
    "bad", [(0, 0), (-1, 2), (1,), (1, 2, 3), ("a", "b"), (float("nan"), 1), (float("inf"), 1), (True, 1), "0.6,0.4"]
)
def test_bad_fusion_weights_are_refused_with_the_form_that_works(bad: object, demo: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"fusion_weights must be 'learn' or two non-negative numbers"):
        ft.finetune(demo, model="never-loaded", output=tmp_path / "out", fusion="rrf", fusion_weights=bad)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()  # refused before any work
    assert _fusion.check_fusion_weights([0.6, 0.4]) == (0.6, 0.4) == _fusion.check_fusion_weights((0.6, 0.4))


def _fused_ranking(first: dict[str, float], tuned: dict[str, float], weights: tuple[float, float]) -> list[str]:
    """RRF as DESIGN.md states it, k = 60, ranks from 1, ties to the first stage's order."""
    order = sorted(first, key=lambda d: -first[d])
    ce_rank = {d: i + 1 for i, d in enumerate(sorted(order, key=lambda d: -tuned[d]))}
    fused = {d: weights[0] / (61 + i) + weights[1] / (60 + ce_rank[d]) for i, d in enumerate(order)}
    return sorted(order, key=lambda d: (-fused[d], order.index(d)))


def test_cli_finetune_fuses_with_the_weights_it_reports_and_says_how_to_use_them(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(out), "--candidates", "10"]
    main([*argv, "--fusion", "rrf", "--learning-rate", "1e-12", "--no-progress", "--threads", "1"])
    report = json.loads((out / "report.json").read_text())
    fusion = report["fusion"]
    assert fusion["method"] == "rrf" and fusion["rrf_k"] == 60
    base, tuned = fusion["base"], fusion["tuned"]
    # no dev set on the demo's 4 training queries: the base chooses on them, the trained step keeps the default
    assert base["queries"] == len(report["train_queries"]) == 4 and set(base["grid"]) == {
        f"{i / 10:g}" for i in range(11)
    }
    assert base["grid"][f"{base['rrf_weights'][1]:g}"] == max(base["grid"].values())
    assert base["seconds"] >= 0 and tuned["queries"] == 0 and tuned["grid"] == {}
    assert tuned["rrf_weights"] == [1.0, 1.0] and "no dev set" in tuned["chosen_on"]
    first = read_trec_run(out / "first_stage.run")
    for name in ("base", "tuned"):
        scored, fused = read_trec_run(out / f"{name}.run"), read_trec_run(out / f"{name}+rrf.run")
        for q in report["eval_queries"]:
            head = dict(sorted(first[q].items(), key=lambda x: -x[1])[:10])
            expected = _fused_ranking(head, scored[q], tuple(fusion[name]["rrf_weights"]))
            assert sorted(fused[q], key=lambda d: -fused[q][d])[:10] == expected
    cmp = report["comparisons"]["tuned+rrf_vs_first_stage"]
    means, _ = evaluate_run(load_beir(demo).qrels, fused, query_ids=report["eval_queries"])
    assert cmp["mean_b"] == pytest.approx(means["ndcg@10"]) == pytest.approx(report["tuned+rrf"]["ndcg@10"])
    printed = capsys.readouterr().out
    assert "tuned+rrf: RRF (k=60) with rrf_weights=(1, 1) (retriever, cross-encoder; the adapters' default" in printed
    assert 'to rerank this way: fusion="rrf", rrf_weights=(1, 1)' in printed


def test_cli_finetune_takes_given_fusion_weights_and_refuses_bad_ones_before_any_work(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "tuned"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--candidates", "10", "--fusion", "rrf"]
    with pytest.raises(SystemExit) as exit_info:
        main([*argv, "--output", str(tmp_path / "x"), "--fusion-weights", "0,0"])
    assert exit_info.value.code == 2 and not (tmp_path / "x").exists()
    err = capsys.readouterr().err
    assert (
        "expected learn or two non-negative RRF weights W_RETRIEVER,W_CE, not both 0 (e.g. 0.6,0.4), got '0,0'" in err
    )
    main([*argv, "--output", str(out), "--fusion-weights", "0.25,0.75", "--no-progress", "--threads", "1"])
    report = json.loads((out / "report.json").read_text())
    for name in ("base", "tuned"):
        assert report["fusion"][name]["rrf_weights"] == [0.25, 0.75]
        assert report["fusion"][name]["chosen_on"] == "given, not chosen" and report["fusion"][name]["grid"] == {}
    first, base = read_trec_run(out / "first_stage.run"), read_trec_run(out / "base.run")
    fused = read_trec_run(out / "base+rrf.run")
    q = report["eval_queries"][0]
    head = dict(sorted(first[q].items(), key=lambda x: -x[1])[:10])
    assert sorted(fused[q], key=lambda d: -fused[q][d])[:10] == _fused_ranking(head, base[q], (0.25, 0.75))
