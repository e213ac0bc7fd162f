"""Distillation targets (``loss="distill"``): the first stage fused with the base reranker, in the base's units.

Where the base reranker starts below the user's first stage (a model from another domain), fusing the two
(RRF) ranks better than either (``benchmarks/finetune.md``, rounds 15-17), but the cross-encoder alone does
not learn what the first stage knows from a few dozen judged (positive, negative) pairs. Distillation trains
it on every candidate of a query instead: the teacher is the fused ranking (the first stage's order and the
base reranker's, RRF at weights chosen on the judged training queries), with the query's judged positives
lifted to the top; each candidate's target is the base reranker's own score at the candidate's place in the
teacher's order (the base's scores of the list, sorted, dealt out in the teacher's order). So the targets keep
the base's scale and spread and change only the order, and the loss is sentence-transformers' ``MSELoss``
(distilling a cross-encoder from a teacher's scores, as in Hofstätter et al. 2020, with the hybrid ranking as
the teacher). The teacher needs no label beyond each query's positive, so title and generated queries
distil as judged ones do.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..._ranking import rank
from ..._scores import Scorer
from ..evaluation._data import Dataset, Run, ranked_ids
from ..evaluation._pipeline import tracked
from ._pairs import TrainingPairs, _scored_query, _unit


def distill_lists(
    dataset: Dataset,
    run: Run,
    query_ids: Sequence[str],
    scorer: Scorer,
    *,
    rrf_weights: tuple[float, float],
    depth: int = 30,
    progress: bool = False,
) -> TrainingPairs:
    """Each query's list (its judged positives and the first stage's best ``depth``) with the teacher's targets.

    For each query with a judged positive (grade >= 1) in the corpus: the first stage's ``depth`` best
    candidates, then the positives it did not retrieve, are scored by ``scorer`` (each long text by its
    best window, as :func:`~ce_rerank.workflows.finetune._pairs.mine_pairs` does). The teacher's order is
    the positives (by grade, then fused rank) followed by the other candidates by their RRF fusion of the
    first stage's rank and the scorer's (``rrf_weights``: retriever, cross-encoder). The ``i``-th document of
    that order gets the ``i``-th highest of the list's raw scores as its target (``labels``).

    Returns:
        One row per (query, candidate). ``stats`` counts queries, positives (``positives_not_retrieved``: those
        past the first stage's ``depth``), the other candidates, ``moved`` (rows whose document is not the one
        the base itself ranks at that place) and the windowed texts, and gives the teacher's ``rrf_weights``.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    rows = TrainingPairs()
    counts = dict.fromkeys(
        ("queries", "positives", "positives_not_retrieved", "candidates", "moved", "windowed_texts"), 0
    )
    for qid in tracked(query_ids, "teacher's targets", progress):
        judged = dataset.qrels.get(qid, {})
        positives = {d: g for d, g in judged.items() if g >= 1 and d in dataset.corpus}
        if not positives:
            continue
        query = _scored_query(scorer, dataset.queries[qid])
        top = [d for d in ranked_ids(run.get(qid, {}))[:depth] if d in dataset.corpus]
        missed = sorted(d for d in positives if d not in top)
        ids = top + missed
        scores = scorer.score(query, [dataset.corpus[d] for d in ids])
        spans = scores.spans or [None] * len(ids)
        fused = [ids[c.index] for c in rank(scores, fusion="rrf", rrf_weights=rrf_weights)]
        place = {d: i for i, d in enumerate(fused)}
        teacher = sorted(positives, key=lambda d: (-positives[d], place[d]))
        teacher += [d for d in fused if d not in positives]
        own = sorted(range(len(ids)), key=lambda i: -scores.raw[i])  # the base's own order
        targets = sorted(scores.raw, reverse=True)
        span = dict(zip(ids, spans, strict=True))
        for d, target in zip(teacher, targets, strict=True):
            rows.add(qid, query, _unit(dataset.corpus[d], span[d]), float(target), grade=positives.get(d, 0))
        counts["moved"] += sum(ids[i] != d for i, d in zip(own, teacher, strict=True))
        counts["queries"] += 1
        counts["positives"] += len(positives)
        counts["positives_not_retrieved"] += len(missed)
        counts["candidates"] += len(ids) - len(positives)
        counts["windowed_texts"] += scores.windowed
    rows.stats = {**counts, "rows": len(rows), "depth": depth, "rrf_weights": list(rrf_weights)}
    return rows
