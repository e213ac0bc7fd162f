"""Ranking policy: the one place where order, cut-offs and fusion are decided."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ._scores import Scores

Fusion = Literal["rrf"]


@dataclass(frozen=True)
class RankedCandidate:
    """One kept candidate: a position into the caller's input plus its scores.

    Attributes:
        index: position of the candidate in the list that was reranked.
        relevance_score: calibrated relevance in [0, 1].
        ce_raw_score: the model's raw output.
        retrieval_rank: 1-based position in the retriever's list (``index + 1``).
        fusion_score: the Reciprocal Rank Fusion score, when fusion is on.
        ce_best_span: character span of the best window, when the text was windowed.
        rerank_error: with ``on_error="passthrough"``, why scoring failed (scores are then None).
    """

    index: int
    relevance_score: float | None
    ce_raw_score: float | None
    retrieval_rank: int
    fusion_score: float | None = None
    ce_best_span: tuple[int, int] | None = None
    rerank_error: str | None = None

    @property
    def score(self) -> float | None:
        """The score the output is sorted by: ``fusion_score`` if fusion is on, else relevance."""
        return self.fusion_score if self.fusion_score is not None else self.relevance_score

    def metadata(self) -> dict[str, object]:
        """The score keys of DESIGN.md, as adapters write them into metadata."""
        if self.rerank_error is not None:
            return {"retrieval_rank": self.retrieval_rank, "rerank_error": self.rerank_error}
        out: dict[str, object] = {
            "relevance_score": self.relevance_score,
            "ce_raw_score": self.ce_raw_score,
            "retrieval_rank": self.retrieval_rank,
        }
        if self.fusion_score is not None:
            out["fusion_score"] = self.fusion_score
        if self.ce_best_span is not None:
            out["ce_best_span"] = list(self.ce_best_span)
        return out


def validate_policy(
    *,
    top_n: int | None,
    min_score: float | None,
    fusion: str | None,
    rrf_k: float,
    rrf_weights: Sequence[float],
) -> None:
    """Raise ValueError, naming the fix, for settings that cannot work."""
    if top_n is not None and (isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1):
        raise ValueError(f"top_n must be an integer >= 1 (or None to keep every candidate), got {top_n!r}")
    if min_score is not None and not (0.0 <= min_score <= 1.0):
        raise ValueError(
            f"min_score must lie in [0, 1]: it applies to relevance_score, got {min_score!r}; "
            "to filter on the model's raw output, filter on metadata['ce_raw_score'] yourself"
        )
    if fusion not in (None, "rrf"):
        raise ValueError(f"fusion must be None or 'rrf', got {fusion!r}")
    if not rrf_k > 0:
        raise ValueError(f"rrf_k must be > 0, got {rrf_k!r}")
    if len(rrf_weights) != 2 or any(w < 0 for w in rrf_weights):
        raise ValueError(
            f"rrf_weights must be two non-negative numbers (retriever, cross-encoder), got {list(rrf_weights)!r}"
        )


def passthrough(n: int, error: str) -> list[RankedCandidate]:
    """Every candidate, in the retriever's order, flagged with ``rerank_error`` (nothing dropped)."""
    return [
        RankedCandidate(index=i, relevance_score=None, ce_raw_score=None, retrieval_rank=i + 1, rerank_error=error)
        for i in range(n)
    ]


def rank(
    scores: Scores,
    *,
    top_n: int | None = None,
    min_score: float | None = None,
    fusion: Fusion | None = None,
    rrf_k: float = 60.0,
    rrf_weights: Sequence[float] = (1.0, 1.0),
) -> list[RankedCandidate]:
    """Order candidates by the cross-encoder (or by RRF), filter and cut.

    The input order is the retriever's order: ties are broken by it (stable), and
    ``retrieval_rank`` is the 1-based input position. ``min_score`` filters on
    ``relevance_score`` before the ``top_n`` cut, with or without fusion.

    Reciprocal Rank Fusion (Cormack, Clarke and Buettcher, SIGIR 2009):
    ``fusion_score(d) = w_retriever / (rrf_k + retrieval_rank) + w_ce / (rrf_k + ce_rank)``,
    ranks counted from 1.

    Example:
        >>> s = Scores.from_raw([-1.0, 2.0, 0.5])
        >>> [c.index for c in rank(s, top_n=2)]
        [1, 2]
    """
    validate_policy(top_n=top_n, min_score=min_score, fusion=fusion, rrf_k=rrf_k, rrf_weights=rrf_weights)
    n = len(scores)
    # Sort by the raw score: the sigmoid saturates in float arithmetic and would create false ties.
    ce_order = sorted(range(n), key=lambda i: (-scores.raw[i], i))
    fusion_scores: list[float | None] = [None] * n
    order = ce_order
    if fusion == "rrf":
        w_ret, w_ce = float(rrf_weights[0]), float(rrf_weights[1])
        for ce_rank, i in enumerate(ce_order, start=1):
            fusion_scores[i] = w_ret / (rrf_k + i + 1) + w_ce / (rrf_k + ce_rank)
        order = sorted(range(n), key=lambda i: (-(fusion_scores[i] or 0.0), i))
    out: list[RankedCandidate] = []
    for i in order:
        if min_score is not None and scores.relevance[i] < min_score:
            continue
        out.append(
            RankedCandidate(
                index=i,
                relevance_score=scores.relevance[i],
                ce_raw_score=scores.raw[i],
                retrieval_rank=i + 1,
                fusion_score=fusion_scores[i],
                ce_best_span=scores.spans[i],
            )
        )
        if top_n is not None and len(out) == top_n:
            break
    return out
