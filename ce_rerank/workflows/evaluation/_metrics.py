"""Metrics of a run against qrels, computed by pytrec_eval (the reference trec_eval code)."""

from __future__ import annotations

from collections.abc import Sequence

from ._data import Run, _cut, _require

#: The metrics reported, in this order (names as in metrics.json).
METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100", "map")


# metric name -> (pytrec_eval measure, key in its answer, depth the run is cut to first)
_TREC_MEASURES: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    # trec_eval's recip_rank has no cut-off: MRR@10 is recip_rank over the run cut to its 10 best.
    "mrr@10": ("recip_rank", "recip_rank", 10),
    "recall@100": ("recall.100", "recall_100", None),
    "map": ("map", "map", None),
}


def evaluate_run(
    qrels: dict[str, dict[str, int]],
    run: Run,
    *,
    query_ids: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """NDCG@10, MRR@10, Recall@100 and MAP of ``run``, computed by ``pytrec_eval`` (``trec_eval``).

    Args:
        qrels: query id -> document id -> grade (>= 1 relevant; NDCG uses the grades as gains).
        run: query id -> document id -> score.
        query_ids: the queries to average over (default: every query of ``qrels`` with a relevant
            document). A query the run does not answer counts 0, as ``trec_eval -c`` counts it.
        metrics: a subset of :data:`METRICS`.

    Returns:
        ``(means, per_query)``: metric -> mean, and query id -> metric -> value.
    """
    pytrec_eval = _require("pytrec_eval", "computing metrics")
    unknown = [m for m in metrics if m not in _TREC_MEASURES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {list(METRICS)}")
    qids = (
        list(query_ids)
        if query_ids is not None
        else [q for q, docs in qrels.items() if any(g >= 1 for g in docs.values())]
    )
    if not qids:
        raise ValueError("no query to evaluate: the qrels hold no relevant document")
    judged = {q: {d: int(g) for d, g in qrels.get(q, {}).items()} for q in qids}
    answered = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in qids if run.get(q)}
    per_query: dict[str, dict[str, float]] = {q: dict.fromkeys(metrics, 0.0) for q in qids}
    by_depth: dict[int | None, list[str]] = {}
    for m in metrics:
        by_depth.setdefault(_TREC_MEASURES[m][2], []).append(m)
    for depth, names in by_depth.items():
        cut = answered if depth is None else _cut(answered, depth)
        evaluator = pytrec_eval.RelevanceEvaluator(judged, {_TREC_MEASURES[m][0] for m in names})
        for q, values in evaluator.evaluate(cut).items():
            for m in names:
                per_query[q][m] = float(values[_TREC_MEASURES[m][1]])
    means = {m: sum(per_query[q][m] for q in qids) / len(qids) for m in metrics}
    return means, per_query
