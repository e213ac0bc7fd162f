"""RRF weights for a reranker behind the user's first stage, chosen on judged queries it was not trained on.

Reciprocal Rank Fusion with equal weights lets a reranker that starts below the first stage pull the
fused ranking down too (Cranfield, CISI in ``benchmarks/finetune.md``), and one that is better than the
first stage gets held back by it. How much to trust the reranker over the first stage is a property of
the domain, so ``finetune`` measures it: each weight pair of a small grid fuses the two rankings of the
queries the reranker has not been trained on (never the evaluation queries), and the pair with the best
mean NDCG@10 is the one reported and evaluated on the held-out queries. The grid's ends are the first
stage alone and the reranker alone, so the choice may also be "do not fuse" or "do not rerank".
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..._reranker import Reranker
from ..._scores import Scorer
from ..evaluation._data import Dataset, Run
from ..evaluation._metrics import evaluate_run
from ..evaluation._pipeline import rerank_run
from ._gate import GATE_METRIC, _Memo

EQUAL_WEIGHTS = (1.0, 1.0)
"""The adapters' default RRF weights (retriever, cross-encoder)."""

RRF_SHARES = tuple(i / 10 for i in range(11))
"""The cross-encoder's shares ``s`` tried: RRF weights ``(1 - s, s)``, from first stage alone to reranker alone."""


@dataclass(frozen=True)
class FusionChoice:
    """The RRF weights chosen for one reranker, and what they were chosen on.

    Attributes:
        rrf_weights: ``(retriever, cross-encoder)``, as the adapters' ``rrf_weights`` take them.
        chosen_on: which queries they were chosen on, or that they were given, or why they are the
            adapters' default.
        queries: the ids of those queries (empty for the default).
        grid: each cross-encoder share tried -> mean NDCG@10 of the fused ranking on those queries.
        seconds: time spent choosing (scoring the queries' candidates once, then fusing at each share).
    """

    rrf_weights: tuple[float, float]
    chosen_on: str
    queries: list[str] = field(default_factory=list)
    grid: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        """The choice as ``report.json`` holds it under ``fusion``."""
        return {
            "rrf_weights": list(self.rrf_weights),
            "chosen_on": self.chosen_on,
            "queries": len(self.queries),
            "metric": GATE_METRIC,
            "grid": dict(self.grid),
            "seconds": round(self.seconds, 1),
        }


def equal_weights(why: str) -> FusionChoice:
    """The adapters' default weights, with the reason they were not chosen on queries."""
    return FusionChoice(rrf_weights=EQUAL_WEIGHTS, chosen_on=why)


def choose_rrf_weights(
    dataset: Dataset,
    first_stage: Run,
    query_ids: Sequence[str],
    scorer: Scorer,
    *,
    candidates: int,
    chosen_on: str,
    shares: Sequence[float] = RRF_SHARES,
    progress: bool = False,
) -> FusionChoice:
    """The RRF weights whose fusion of ``first_stage`` and ``scorer`` has the best mean NDCG@10 on ``query_ids``.

    Each query's ``candidates`` best documents are scored once; every share then only re-sorts them.
    Ties go to the share nearest equal weights (0.5), then to the smaller share. Queries the first stage
    returns nothing for count as 0, as in the gate.

    Args:
        dataset: texts and judgments.
        first_stage: the first stage's run (it must cover ``query_ids``' candidates).
        query_ids: judged queries ``scorer`` has not been trained on, and never the evaluation queries.
        scorer: the reranker.
        candidates: candidates reranked per query, as in the gate.
        chosen_on: words for the report saying which queries these are (``"chosen on ..."``).
        shares: the cross-encoder shares ``s`` to try; weights are ``(1 - s, s)``.
        progress: progress bar while scoring.
    """
    qids = list(query_ids)
    if not qids:
        raise ValueError("choose_rrf_weights needs at least one judged query")
    if not shares or any(not 0 <= s <= 1 for s in shares):
        raise ValueError(f"shares must be numbers in [0, 1], got {list(shares)!r}")
    started = time.monotonic()
    runs = {q: first_stage.get(q, {}) for q in qids}
    memo = _Memo(scorer)
    # scores every pair once; the shares below only re-sort them
    rerank_run(dataset, runs, memo, candidates=candidates, progress=progress, label="choosing fusion weights")
    grid: dict[float, float] = {}
    for s in shares:
        fused = rerank_run(
            dataset, runs, Reranker(memo, top_n=None, fusion="rrf", rrf_weights=(1 - s, s)), candidates=candidates
        )
        grid[s] = evaluate_run(dataset.qrels, fused, query_ids=qids)[0][GATE_METRIC]
    best = max(grid, key=lambda s: (round(grid[s], 9), -abs(s - 0.5), -s))
    return FusionChoice(
        rrf_weights=(round(1 - best, 10), best),
        chosen_on=chosen_on,
        queries=qids,
        grid={f"{s:g}": v for s, v in grid.items()},
        seconds=time.monotonic() - started,
    )


def check_fusion_weights(weights: object) -> Literal["learn"] | tuple[float, float]:
    """``"learn"``, or two finite non-negative RRF weights ``(retriever, cross-encoder)``, not both 0."""
    if weights == "learn":
        return "learn"
    pair = list(weights) if isinstance(weights, (tuple, list)) else []
    numbers = [float(w) for w in pair if isinstance(w, (int, float)) and not isinstance(w, bool)]
    if len(pair) != 2 or len(numbers) != 2 or not all(math.isfinite(w) and w >= 0 for w in numbers) or not any(numbers):
        raise ValueError(
            "fusion_weights must be 'learn' or two non-negative numbers (retriever, cross-encoder), not both 0, "
            f"e.g. (0.6, 0.4); got {weights!r}"
        )
    return (numbers[0], numbers[1])


def fusion_choices(
    weights: Literal["learn"] | tuple[float, float],
    data: Dataset,
    run: Run,
    *,
    judged_training: Sequence[str],
    dev_ids: Sequence[str],
    base: Scorer,
    tuned: Scorer,
    trained: bool,
    candidates: int,
    progress: bool,
) -> dict[str, FusionChoice]:
    """Each reranker's RRF weights: given, or chosen on the judged queries it was not trained on.

    The base was trained on none of the judged training and dev queries; a trained step only not on the
    dev queries. Evaluation queries are never used.
    """
    if weights != "learn":
        given = FusionChoice(rrf_weights=weights, chosen_on="given, not chosen")
        return {"base": given, "tuned": given}
    if judged_training:
        n = len(judged_training)
        base_choice = choose_rrf_weights(
            data,
            run,
            judged_training,
            base,
            candidates=candidates,
            chosen_on=f"chosen on the {n} judged training queries, dev queries included (the base was trained on none)",
            progress=progress,
        )
    else:
        base_choice = equal_weights("the adapters' default: no judged training queries to choose on")
    if not trained:
        return {"base": base_choice, "tuned": base_choice}  # the base was saved: the same reranker
    if dev_ids:
        tuned_choice = choose_rrf_weights(
            data,
            run,
            dev_ids,
            tuned,
            candidates=candidates,
            chosen_on=f"chosen on the {len(dev_ids)} dev queries (the tuned model was not trained on them)",
            progress=progress,
        )
    else:
        tuned_choice = equal_weights(
            "the adapters' default: no judged query is left that the tuned model was not trained on (no dev set)"
        )
    return {"base": base_choice, "tuned": tuned_choice}
