"""The gate: first stage, base and tuned reranker on the held-out queries; the report, its runs and plots."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..._reranker import Reranker
from ..._scores import Scorer, Scores
from ..evaluation._data import Dataset, Run, write_trec_run
from ..evaluation._metrics import evaluate_run
from ..evaluation._pipeline import EvaluationResult, QueryResult, plot_per_query, rerank_run
from ..evaluation._plot import per_query_scatter
from ..evaluation._significance import PairedComparison, paired_comparison

GATE_METRIC = "ndcg@10"


class _Memo:
    """Remembers a scorer's raw scores, so that fusion reranks without scoring the pairs twice."""

    def __init__(self, inner: Scorer) -> None:
        self.inner = inner
        self.name = inner.name
        self._raw: dict[tuple[str, str], float] = {}

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        todo = list(dict.fromkeys(t for t in texts if (query, t) not in self._raw))
        if todo:
            for t, r in zip(todo, self.inner.score(query, todo).raw, strict=True):
                self._raw[(query, t)] = r
        return Scores.from_raw([self._raw[(query, t)] for t in texts])

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:  # pragma: no cover - protocol only
        return self.score(query, texts)


@dataclass
class GateResult:
    """The held-out comparison.

    Attributes:
        metrics: system (``first_stage``, ``base``, ``tuned``, and with fusion ``base+rrf``,
            ``tuned+rrf``) -> metric -> mean over the evaluation queries.
        per_query: system -> query id -> metric -> value.
        runs: system -> its TREC run over the evaluation queries.
        tuned_vs_base: the paired comparison on NDCG@10 that decides.
        comparisons: every comparison reported (name -> as_dict).
        passed: the tuned reranker is better than the base on held-out NDCG@10.
        verdict: one line saying so.
    """

    metrics: dict[str, dict[str, float]]
    per_query: dict[str, dict[str, dict[str, float]]]
    runs: dict[str, Run] = field(repr=False)
    tuned_vs_base: PairedComparison
    comparisons: dict[str, dict[str, Any]]
    passed: bool
    verdict: str


def _verdict(cmp: PairedComparison, first: float, first_name: str) -> tuple[bool, str]:
    passed = cmp.delta > 0
    counts = f"better {cmp.better} / worse {cmp.worse} / same {cmp.same} of {cmp.queries} queries"
    change = f"{cmp.delta:+.4f}; {counts}; paired t-test p={cmp.p_value:.3g}"
    figures = f"held-out NDCG@10 {cmp.mean_a:.4f} -> {cmp.mean_b:.4f} ({change})"
    vs_first = f"{'above' if cmp.mean_b > first else 'not above'} {first_name} alone ({first:.4f})"
    if passed:
        return True, f"tuned reranker is better than the base: {figures}; {vs_first}"
    return False, f"tuned reranker is NOT better than the base: {figures}; {vs_first}; do not ship it"


def run_gate(
    dataset: Dataset,
    first_stage: Run,
    eval_queries: Sequence[str],
    base: Scorer,
    tuned: Scorer,
    *,
    first_stage_name: str,
    candidates: int,
    fusion: Literal["rrf"] | None = None,
    fusion_weights: Mapping[str, Sequence[float]] | None = None,
    progress: bool = False,
) -> GateResult:
    """Rerank the evaluation queries' candidates with both rerankers and compare all three systems.

    With ``fusion``, ``base`` and ``tuned`` are also fused with the first stage, each with its
    ``fusion_weights`` entry (``(retriever, cross-encoder)``; default equal weights).
    """
    qids = list(eval_queries)
    fs = {q: first_stage.get(q, {}) for q in qids}
    runs: dict[str, Run] = {"first_stage": fs}
    scorers = {"base": _Memo(base), "tuned": _Memo(tuned)}
    for name, scorer in scorers.items():
        runs[name] = rerank_run(
            dataset,
            fs,
            Reranker(scorer, top_n=None),
            candidates=candidates,
            progress=progress,
            label=f"held-out queries, {name} model",
        )
    if fusion is not None:
        for name, scorer in scorers.items():
            runs[f"{name}+{fusion}"] = rerank_run(
                dataset,
                fs,
                Reranker(scorer, top_n=None, fusion=fusion, rrf_weights=(fusion_weights or {}).get(name, (1.0, 1.0))),
                candidates=candidates,
            )
    metrics: dict[str, dict[str, float]] = {}
    per_query: dict[str, dict[str, dict[str, float]]] = {}
    for name, run in runs.items():
        metrics[name], per_query[name] = evaluate_run(dataset.qrels, run, query_ids=qids)
    cmp = paired_comparison(per_query["base"], per_query["tuned"], metric=GATE_METRIC, query_ids=qids)
    comparisons = {
        "tuned_vs_base": cmp.as_dict(),
        "tuned_vs_first_stage": paired_comparison(
            per_query["first_stage"], per_query["tuned"], metric=GATE_METRIC, query_ids=qids
        ).as_dict(),
        "base_vs_first_stage": paired_comparison(
            per_query["first_stage"], per_query["base"], metric=GATE_METRIC, query_ids=qids
        ).as_dict(),
    }
    if fusion is not None:
        for other in ("base", "first_stage"):
            comparisons[f"tuned+{fusion}_vs_{other}"] = paired_comparison(
                per_query[other], per_query[f"tuned+{fusion}"], metric=GATE_METRIC, query_ids=qids
            ).as_dict()
    passed, verdict = _verdict(cmp, metrics["first_stage"][GATE_METRIC], first_stage_name)
    return GateResult(
        metrics=metrics,
        per_query=per_query,
        runs=runs,
        tuned_vs_base=cmp,
        comparisons=comparisons,
        passed=passed,
        verdict=verdict,
    )


def plot_base_vs_tuned(gate: GateResult, path: str | os.PathLike[str], *, title: str) -> Path:
    """Scatter of each held-out query's NDCG@10 with the base (x) and the tuned (y) reranker, as a PNG."""
    qids = list(gate.per_query["base"])
    c = gate.tuned_vs_base
    return per_query_scatter(
        [gate.per_query["base"][q][GATE_METRIC] for q in qids],
        [gate.per_query["tuned"][q][GATE_METRIC] for q in qids],
        path,
        xlabel="NDCG@10 base reranker",
        ylabel="NDCG@10 tuned reranker",
        title=f"{title}: {c.queries} held-out queries; better {c.better}, worse {c.worse}, same {c.same}\n"
        f"mean {c.mean_a:.3f} -> {c.mean_b:.3f} (paired t-test p={c.p_value:.3g})",
    )


def write_outputs(
    out: Path,
    gate: GateResult,
    report: dict[str, Any],
    *,
    dataset_name: str,
    first_stage_name: str,
    model: str,
    candidates: int,
    plot: bool = True,
    written_before: Sequence[Path] = (),
) -> list[Path]:
    """``report.json``, ``first_stage.run``, ``base.run``, ``tuned.run`` (and fused runs), and the plots.

    ``report`` gets a ``files`` entry naming what was written (``written_before`` included).
    """
    written: list[Path] = list(written_before)
    tags = {"first_stage": first_stage_name, "base": f"{first_stage_name}+base", "tuned": f"{first_stage_name}+tuned"}
    for name, run in gate.runs.items():
        path = out / f"{name}.run"
        write_trec_run(run, path, tag=tags.get(name, f"{first_stage_name}+{name}"))
        written.append(path)
    if plot:
        written.append(plot_base_vs_tuned(gate, out / "ndcg10_per_query.png", title=dataset_name))
        first = gate.per_query["first_stage"]
        tuned = gate.per_query["tuned"]
        result = EvaluationResult(
            dataset=dataset_name,
            first_stage_name=first_stage_name,
            model=model,
            candidates=candidates,
            first_stage=gate.metrics["first_stage"],
            reranked=gate.metrics["tuned"],
            per_query=[QueryResult(q, first[q], tuned[q]) for q in first],
            first_stage_run=gate.runs["first_stage"],
            reranked_run=gate.runs["tuned"],
        )
        written.append(plot_per_query(result, out / "tuned_vs_first_stage_ndcg10.png"))
    path = out / "report.json"
    report["files"] = sorted(p.name for p in [*written, path])
    path.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    written.append(path)
    return written
