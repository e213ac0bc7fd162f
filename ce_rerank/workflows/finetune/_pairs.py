"""Training pairs from the user's own first stage: judged positives and hard negatives, cut into the scorer's windows.

``sentence_transformers.util.mine_hard_negatives`` mines with a bi-encoder of its own; here the
negatives must come from the retriever the reranker will sit behind (BM25, the user's dense
model, or their run file), so the candidates are taken from that first stage's run instead.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..._scores import Scorer
from ..evaluation._data import Dataset, Run, ranked_ids
from ..evaluation._pipeline import tracked

NegativeFilter = Literal["base", "none"]


@dataclass
class TrainingPairs:
    """(query, passage, label) rows to train on, and what was kept out and why.

    Attributes:
        queries: the query text of each row.
        passages: the passage of each row: the document, or its window the base reranker scores best.
        labels: 1.0 for a judged (or generated) positive, 0.0 for a hard negative.
        grades: the judged grade of each row (the qrels value; 0 for a hard negative): the gains the
            listwise loss (``loss="lambda"``) trains on, as NDCG counts them.
        query_ids: the query id of each row.
        stats: counts for the report (see :func:`mine_pairs`).
    """

    queries: list[str] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    labels: list[float] = field(default_factory=list)
    grades: list[float] = field(default_factory=list)
    query_ids: list[str] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    def extend(self, other: TrainingPairs) -> None:
        """Append ``other``'s rows (its stats stay its own)."""
        self.query_ids += other.query_ids
        self.queries += other.queries
        self.passages += other.passages
        self.labels += other.labels
        self.grades += other.grades

    def add(self, qid: str, query: str, passage: str, label: float, grade: float | None = None) -> None:
        self.query_ids.append(qid)
        self.queries.append(query)
        self.passages.append(passage)
        self.labels.append(label)
        self.grades.append(label if grade is None else float(grade))


def _unit(text: str, span: tuple[int, int] | None) -> str:
    return text if span is None else text[span[0] : span[1]]


def _scored_query(scorer: Scorer, query: str) -> str:
    """The query as ``scorer`` sends it through its model (cut to its query budget); whole for a scorer that
    does not cut queries."""
    cut = getattr(scorer, "scored_query", None)
    return cut(query) if cut is not None else query


def mine_pairs(
    dataset: Dataset,
    run: Run,
    query_ids: Sequence[str],
    scorer: Scorer,
    *,
    negatives: int = 4,
    depth: int = 30,
    negative_filter: NegativeFilter = "base",
    seed: int = 13,
    progress: bool = False,
) -> TrainingPairs:
    """Positives from the qrels, hard negatives from the first stage's best ``depth`` candidates.

    For each query: every judged relevant document (grade >= 1) is a positive; the first stage's
    ``depth`` best candidates that are not judged relevant are the negative pool (a candidate
    judged relevant is never a negative). The base reranker scores positives and pool together:

    - each query is cut to the scorer's query budget, as scoring cuts it
      (:meth:`~ce_rerank.CrossEncoderScorer.scored_query`);
    - each long text is represented by the window the base reranker scores best (the window
      :class:`~ce_rerank.CrossEncoderScorer` would rank it by, ``ce_best_span``), so training
      sees the units inference scores;
    - ``negative_filter="base"`` drops, as likely false negatives (relevant but unjudged), the
      pool candidates that the base reranker scores above every judged positive of the query
      (the denoising of RocketQA, Qu et al. 2021); ``"none"`` keeps them.

    Then ``negatives`` per positive are drawn (seeded) from what remains.

    Returns:
        The rows; ``stats`` counts queries, positives, negatives, the pool, the judged positives
        kept out of it, and the candidates the filter removed.
    """
    if isinstance(negatives, bool) or not isinstance(negatives, int) or negatives < 1:
        raise ValueError(f"negatives must be an integer >= 1, got {negatives!r}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ValueError(f"depth must be an integer >= 1, got {depth!r}")
    if negative_filter not in ("base", "none"):
        raise ValueError(f"negative_filter must be 'base' or 'none', got {negative_filter!r}")
    rng = random.Random(seed)
    pairs = TrainingPairs()
    stats: dict[str, int] = {
        "queries": 0,
        "queries_without_negatives": 0,
        "positives": 0,
        "positives_not_in_corpus": 0,
        "negatives": 0,
        "negatives_per_positive": negatives,
        "negative_depth": depth,
        "pool_before_filter": 0,
        "pool": 0,
        "judged_positives_kept_out_of_pool": 0,
        "removed_as_false_negatives": 0,
        "windowed_texts": 0,
    }
    for qid in tracked(query_ids, "mining training pairs", progress):
        query = _scored_query(scorer, dataset.queries[qid])
        judged = dataset.qrels.get(qid, {})
        relevant = {d for d, g in judged.items() if g >= 1}
        positives = sorted(d for d in relevant if d in dataset.corpus)
        stats["positives_not_in_corpus"] += len(relevant) - len(positives)
        top = ranked_ids(run.get(qid, {}))[:depth]
        pool = [d for d in top if d not in relevant and d in dataset.corpus]
        stats["judged_positives_kept_out_of_pool"] += sum(d in relevant for d in top)
        if not positives:
            continue
        stats["pool_before_filter"] += len(pool)
        k = negatives * len(positives)
        # Without the filter only the drawn negatives are scored (for their windows), not the whole pool.
        ids = positives + (pool if negative_filter == "base" else rng.sample(pool, min(len(pool), k)))
        scores = scorer.score(query, [dataset.corpus[d] for d in ids])
        spans = scores.spans or [None] * len(ids)
        stats["windowed_texts"] += scores.windowed
        raw = dict(zip(ids, scores.raw, strict=True))
        span = dict(zip(ids, spans, strict=True))
        if negative_filter == "base":
            ceiling = max(raw[d] for d in positives)
            kept = [d for d in pool if raw[d] <= ceiling]
            stats["removed_as_false_negatives"] += len(pool) - len(kept)
            pool = kept
            chosen = rng.sample(pool, min(len(pool), k))
        else:
            chosen = ids[len(positives) :]
        stats["pool"] += len(pool)
        if not chosen:
            stats["queries_without_negatives"] += 1
        stats["queries"] += 1
        for d in positives:
            pairs.add(qid, query, _unit(dataset.corpus[d], span[d]), 1.0, grade=judged[d])
        for d in chosen:
            pairs.add(qid, query, _unit(dataset.corpus[d], span[d]), 0.0)
        stats["positives"] += len(positives)
        stats["negatives"] += len(chosen)
    stats["pairs"] = len(pairs)
    pairs.stats = {**stats, "negative_filter": negative_filter}
    return pairs
