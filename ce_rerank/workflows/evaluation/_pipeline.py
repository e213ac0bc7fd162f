"""The evaluation pipeline: rerank a first-stage run, measure before and after, save and plot the result."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..._ranking import RankedCandidate
from ..._reranker import Reranker
from ..._scores import Scorer
from ._data import MIN_DEPTH, Dataset, DatasetError, Run, _cut, _require, ranked_ids, write_trec_run
from ._first_stage import first_stage_run
from ._metrics import METRICS, evaluate_run
from ._plot import per_query_scatter

T = TypeVar("T")


def _progress() -> Any:
    rich_progress = _require("rich.progress", "the progress bar")
    from rich.console import Console

    return rich_progress.Progress(
        rich_progress.TextColumn("{task.description}"),
        rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(),
        rich_progress.TimeElapsedColumn(),
        rich_progress.TextColumn("eta"),
        rich_progress.TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def tracked(items: Collection[T], label: str, show: bool) -> Iterator[T]:
    """``items`` one by one, with a progress bar on stderr (advanced as each item's work ends) when ``show``."""
    if not show:
        yield from items
        return
    bar = _progress()
    task = bar.add_task(label, total=len(items))
    with bar:
        for item in items:
            yield item
            bar.advance(task)


def _candidates(candidates: int | None, top_n: int | None) -> int:
    """``candidates``, or ``top_n`` (its 0.1 name), or 100; both given must agree."""
    if candidates is not None and top_n is not None and candidates != top_n:
        raise ValueError(
            f"candidates={candidates!r} and top_n={top_n!r} disagree: top_n is the old name of candidates, give one"
        )
    n = candidates if candidates is not None else top_n if top_n is not None else 100
    name = "candidates" if candidates is not None or top_n is None else "top_n"
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {n!r}")
    return n


def rerank_run(
    dataset: Dataset,
    run: Run,
    scorer: Scorer | Reranker,
    *,
    candidates: int | None = None,
    progress: bool = False,
    top_n: int | None = None,
    label: str | None = None,
) -> Run:
    """Rerank the ``candidates`` best documents of each query of ``run``; the rest keep their order below.

    Args:
        dataset: supplies query and document texts.
        run: the first-stage run.
        scorer: a :class:`~ce_rerank.Scorer` (reranked with ``Reranker(scorer, top_n=None)``) or a
            ready :class:`~ce_rerank.Reranker` (candidates it drops follow the ones it keeps, in
            first-stage order).
        candidates: how many candidates per query go to the scorer (default 100).
        progress: show a progress bar on stderr (needs ``rich``).
        top_n: the 0.1 name of ``candidates``, still accepted.
        label: the progress bar's text (default ``"reranking DATASET"``).

    Returns:
        A run whose scores order each query's documents: the reranked candidates carry the
        scorer's raw score (the fusion score when the reranker fuses), the rest lower scores in
        first-stage order.
    """
    n = _candidates(candidates, top_n)
    reranker = scorer if isinstance(scorer, Reranker) else Reranker(scorer, top_n=None)
    missing = sorted({d for s in run.values() for d in s if d not in dataset.corpus})
    if missing:
        raise DatasetError(
            f"the run names {len(missing)} document(s) that are not in the corpus, e.g. {missing[0]!r}: "
            "check that the run belongs to this dataset"
        )
    unknown = [q for q in run if q not in dataset.queries]
    if unknown:
        raise DatasetError(
            f"the run has {len(unknown)} query id(s) that are not in queries.jsonl, e.g. {unknown[0]!r}: "
            "check that the run belongs to this dataset"
        )
    out: Run = {}
    for qid, scores in tracked(run.items(), label or f"reranking {dataset.name}", progress):
        order = ranked_ids(scores)
        head, tail = order[:n], order[n:]
        ranked: list[RankedCandidate] = (
            reranker.rerank(dataset.queries[qid], [dataset.corpus[d] for d in head], ids=head) if head else []
        )
        kept = [c.index for c in ranked]
        kept_set = set(kept)
        rest = [i for i in range(len(head)) if i not in kept_set]
        new: dict[str, float] = {}
        # The score the reranker sorted by: the fused score with fusion on, else the raw logit.
        keys = [c.fusion_score if c.fusion_score is not None else c.ce_raw_score for c in ranked]
        if all(k is not None and math.isfinite(k) for k in keys):
            for c, k in zip(ranked, keys, strict=True):
                new[head[c.index]] = float(k)  # type: ignore[arg-type]
            floor = min(new.values(), default=0.0)
        else:  # passthrough after a scoring error: no scores, keep the given order
            floor = 0.0
            for pos, i in enumerate(kept):
                new[head[i]] = float(len(kept) - pos)
        below = [head[i] for i in rest] + tail
        for pos, did in enumerate(below, start=1):
            new[did] = floor - pos
        out[qid] = new
    return out


#: What :meth:`EvaluationResult.save` writes, in this order (the plot last, when asked for).
OUTPUT_FILES = ("metrics.json", "first_stage.run", "reranked.run", "per_query.tsv", "ndcg10_per_query.png")


def check_output_dir(output_dir: str | os.PathLike[str], *, plot: bool = True) -> Path:
    """Check that :meth:`EvaluationResult.save` can write into ``output_dir``; nothing is created.

    Call it before a long evaluation, so that a bad path fails in a second, not after the work.

    Raises:
        DatasetError: ``output_dir`` is a file, one of the files to write is a directory, or the
            folder (or the nearest existing folder above it) cannot be written to.
    """
    out = Path(output_dir).expanduser()
    if out.exists() and not out.is_dir():
        raise DatasetError(
            f"the output directory {str(output_dir)!r} is a file: give a folder (it is created if missing) "
            f"for {', '.join(OUTPUT_FILES[: 5 if plot else 4])}"
        )
    for name in OUTPUT_FILES[: 5 if plot else 4]:
        if (out / name).is_dir():
            raise DatasetError(
                f"the output file {str(out / name)!r} is a directory: remove it or choose another output folder"
            )
    existing = out
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DatasetError(f"the output directory {str(output_dir)!r} cannot be created: {str(existing)!r} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DatasetError(
            f"the output directory {str(output_dir)!r} cannot be written: no permission to write in {str(existing)!r}"
        )
    return out


@dataclass(frozen=True)
class QueryResult:
    """One query's metrics before and after reranking."""

    query_id: str
    before: dict[str, float]
    after: dict[str, float]

    def delta(self, metric: str = "ndcg@10") -> float:
        """``after - before`` for one metric."""
        return self.after[metric] - self.before[metric]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_reranking` measured.

    Attributes:
        dataset: the dataset's name.
        first_stage_name: ``bm25``, ``dense:MODEL`` or ``run:FILE``.
        model: the scorer's name.
        candidates: candidates reranked per query (``top_n`` is its 0.1 name, still readable).
        first_stage: metric -> mean over the evaluated queries, before reranking.
        reranked: the same after reranking.
        per_query: each evaluated query's metrics before and after.
        first_stage_run: the first stage's run.
        reranked_run: the reranked run.
    """

    dataset: str
    first_stage_name: str
    model: str
    candidates: int
    first_stage: dict[str, float]
    reranked: dict[str, float]
    per_query: list[QueryResult]
    first_stage_run: Run = field(repr=False)
    reranked_run: Run = field(repr=False)

    @property
    def queries(self) -> int:
        """How many queries the means are over."""
        return len(self.per_query)

    @property
    def top_n(self) -> int:
        """The 0.1 name of :attr:`candidates` (candidates reranked per query, not results kept)."""
        return self.candidates

    def metrics(self) -> dict[str, Any]:
        """The means before and after, and what they were measured on: the content of ``metrics.json``.

        ``top_n`` repeats ``candidates`` for readers of 0.1's files.
        """
        return {
            "first_stage": dict(self.first_stage),
            "reranked": dict(self.reranked),
            "queries": self.queries,
            "model": self.model,
            "candidates": self.candidates,
            "top_n": self.candidates,
        }

    def metrics_json(self, *, indent: int | None = 2) -> str:
        """:meth:`metrics` as JSON text, exactly as ``metrics.json`` holds it."""
        return json.dumps(self.metrics(), indent=indent)

    def changes(self, metric: str = "ndcg@10") -> tuple[int, int, int]:
        """How many queries got better, worse, and stayed the same on ``metric``."""
        deltas = [r.delta(metric) for r in self.per_query]
        eps = 1e-12
        return sum(d > eps for d in deltas), sum(d < -eps for d in deltas), sum(abs(d) <= eps for d in deltas)

    def save(self, output_dir: str | os.PathLike[str], *, plot: bool = True) -> list[Path]:
        """Write ``metrics.json``, ``first_stage.run``, ``reranked.run``, ``per_query.tsv`` and
        (with ``plot``) ``ndcg10_per_query.png`` into ``output_dir``; return the paths written."""
        out = check_output_dir(output_dir, plot=plot)
        out.mkdir(parents=True, exist_ok=True)
        written = [out / name for name in OUTPUT_FILES[:4]]
        written[0].write_text(self.metrics_json() + "\n", encoding="utf-8")
        write_trec_run(self.first_stage_run, written[1], tag=self.first_stage_name)
        write_trec_run(self.reranked_run, written[2], tag=f"{self.first_stage_name}+rerank")
        with written[3].open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(["query-id", *(f"{m}_{when}" for m in METRICS for when in ("before", "after")), "ndcg@10_delta"])
            for r in self.per_query:
                w.writerow(
                    [
                        r.query_id,
                        *(f"{v:.6f}" for m in METRICS for v in (r.before[m], r.after[m])),
                        f"{r.delta():.6f}",
                    ]
                )
        if plot:
            written.append(plot_per_query(self, out / OUTPUT_FILES[4]))
        return written


def evaluate_reranking(
    dataset: Dataset,
    scorer: Scorer | Reranker,
    *,
    first_stage: str | Run = "bm25",
    candidates: int | None = None,
    max_queries: int | None = None,
    progress: bool = False,
    top_n: int | None = None,
) -> EvaluationResult:
    """First stage, rerank the best ``candidates``, and metrics before and after, per query too.

    Args:
        dataset: from :func:`load_beir`.
        scorer: a :class:`~ce_rerank.Scorer` (e.g. ``CrossEncoderScorer``) or a ``Reranker``.
        first_stage: ``"bm25"``, ``"dense:MODEL"``, ``"run:FILE"``, or a ready :data:`Run`.
        candidates: candidates reranked per query (default 100). The first stage retrieves
            ``max(candidates, 100)``, so
            Recall@100 is that of the first stage; reranking the top 100 cannot change it.
        max_queries: evaluate only the first this many judged queries (file order).
        progress: progress bar on stderr.
        top_n: the 0.1 name of ``candidates``, still accepted.
    """
    n = _candidates(candidates, top_n)
    data = dataset.subset(max_queries)
    depth = max(n, MIN_DEPTH)
    if isinstance(first_stage, str):
        label, run = first_stage_run(data, first_stage, top_k=depth)
    else:
        label, run = "run", _cut({q: s for q, s in first_stage.items() if q in data.queries}, depth)
    qids = data.judged_queries
    reranked = rerank_run(data, run, scorer, candidates=n, progress=progress)
    before, before_q = evaluate_run(data.qrels, run, query_ids=qids)
    after, after_q = evaluate_run(data.qrels, reranked, query_ids=qids)
    name = scorer.scorer.name if isinstance(scorer, Reranker) else scorer.name
    return EvaluationResult(
        dataset=data.name,
        first_stage_name=label,
        model=str(name),
        candidates=n,
        first_stage=before,
        reranked=after,
        per_query=[QueryResult(q, before_q[q], after_q[q]) for q in qids],
        first_stage_run=run,
        reranked_run=reranked,
    )


def plot_per_query(result: EvaluationResult, path: str | os.PathLike[str], *, metric: str = "ndcg@10") -> Path:
    """Scatter plot of each query's ``metric`` before (x) against after (y) reranking, as a PNG."""
    better, worse, same = result.changes(metric)
    return per_query_scatter(
        [r.before[metric] for r in result.per_query],
        [r.after[metric] for r in result.per_query],
        path,
        xlabel=f"{metric.upper()} first stage ({result.first_stage_name})",
        ylabel=f"{metric.upper()} reranked (top {result.candidates})",
        title=f"{result.dataset}: {result.queries} queries; better {better}, worse {worse}, same {same}\n"
        f"mean {result.first_stage[metric]:.3f} -> {result.reranked[metric]:.3f}",
    )
