"""Is one run better than another on the same queries? Per-query changes and a paired test.

Two rerankers evaluated on the same queries give paired per-query values; the paired
Student's t-test over their differences is what IR evaluations use (Smucker, Allan and
Carterette, CIKM 2007, found it agrees with the randomisation test on TREC runs). It is
computed by ``scipy.stats.ttest_rel``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ._data import _require

#: Differences smaller than this count as "same" (metric values are means of float sums).
EPSILON = 1e-12


@dataclass(frozen=True)
class PairedComparison:
    """How run B compares with run A on one metric, query by query.

    Attributes:
        metric: the metric compared (e.g. ``ndcg@10``).
        queries: how many queries were paired.
        mean_a: mean of A over those queries.
        mean_b: mean of B.
        better: queries where B > A.
        worse: queries where B < A.
        same: queries where they are equal.
        t: the paired t statistic (0.0 when every difference is 0).
        p_value: two-sided p-value of the paired t-test (1.0 when every difference is 0).
    """

    metric: str
    queries: int
    mean_a: float
    mean_b: float
    better: int
    worse: int
    same: int
    t: float
    p_value: float

    @property
    def delta(self) -> float:
        """``mean_b - mean_a``."""
        return self.mean_b - self.mean_a

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the ``test`` is named so a reader knows what the p-value is)."""
        return {
            "metric": self.metric,
            "queries": self.queries,
            "mean_a": self.mean_a,
            "mean_b": self.mean_b,
            "delta": self.delta,
            "better": self.better,
            "worse": self.worse,
            "same": self.same,
            "test": "paired t-test (scipy.stats.ttest_rel), two-sided",
            "t": self.t,
            "p_value": self.p_value,
        }


def paired_comparison(
    a: Mapping[str, Mapping[str, float]],
    b: Mapping[str, Mapping[str, float]],
    *,
    metric: str = "ndcg@10",
    query_ids: Sequence[str] | None = None,
) -> PairedComparison:
    """Compare two runs' per-query values (as :func:`~ce_rerank.evaluation.evaluate_run` returns them).

    Args:
        a: query id -> metric -> value, for the reference run.
        b: the same for the run being judged.
        metric: which metric.
        query_ids: the queries to pair (default: those of ``a``); each must be in both.

    Raises:
        ValueError: no query, or a query missing from one side.
    """
    qids = list(query_ids) if query_ids is not None else list(a)
    if not qids:
        raise ValueError("no query to compare")
    missing = [q for q in qids if q not in a or q not in b]
    if missing:
        raise ValueError(f"{len(missing)} query id(s) are not in both runs' values, e.g. {missing[0]!r}")
    xs = [float(a[q][metric]) for q in qids]
    ys = [float(b[q][metric]) for q in qids]
    diffs = [y - x for x, y in zip(xs, ys, strict=True)]
    better = sum(d > EPSILON for d in diffs)
    worse = sum(d < -EPSILON for d in diffs)
    if len(qids) < 2 or all(abs(d - diffs[0]) <= EPSILON for d in diffs):
        # No spread: the t-test is undefined. Identical runs are "no evidence of a difference".
        t, p = (0.0, 1.0) if all(abs(d) <= EPSILON for d in diffs) else (math.copysign(math.inf, diffs[0]), 0.0)
        if len(qids) < 2:
            t, p = 0.0, 1.0
    else:
        stats = _require("scipy.stats", "the paired significance test")
        result = stats.ttest_rel(ys, xs)
        t, p = float(result.statistic), float(result.pvalue)
    return PairedComparison(
        metric=metric,
        queries=len(qids),
        mean_a=sum(xs) / len(xs),
        mean_b=sum(ys) / len(ys),
        better=better,
        worse=worse,
        same=len(qids) - better - worse,
        t=t,
        p_value=p,
    )
