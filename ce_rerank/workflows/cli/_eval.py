"""``ce-rerank eval``: first stage, rerank, metrics before and after on a BEIR-layout dataset."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..evaluation._data import _require
from ..evaluation._first_stage import check_first_stage_spec
from ._common import UsageError, _scorer


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..._reranker import Reranker
    from .. import evaluation as ev

    # Check everything cheap before loading the model and running the first stage.
    if args.output is not None:
        try:
            ev.check_output_dir(args.output)
        except ev.DatasetError as exc:
            raise UsageError(str(exc)) from None
    candidates = _candidates(args)
    if args.rrf_weights is not None and args.fusion is None:
        raise UsageError("--rrf-weights weighs the fusion: add --fusion rrf")
    data = ev.load_beir(args.dataset, split=args.split)
    try:
        check_first_stage_spec(args.first_stage, flag="--first-stage")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    _require("pytrec_eval", "computing metrics")
    _require("rich", "the progress bar and the metrics table")
    if args.output is not None:
        _require("matplotlib", "the per-query plot")
    scorer = _scorer(args)
    reranker = Reranker(scorer, top_n=None, fusion=args.fusion, rrf_weights=args.rrf_weights or (1.0, 1.0))
    result = ev.evaluate_reranking(
        data,
        reranker,
        first_stage=args.first_stage,
        candidates=candidates,
        max_queries=args.max_queries,
        progress=not args.no_progress,
    )
    _print_metrics(result)
    if args.output is not None:
        written = result.save(args.output)
        sys.stdout.write("wrote " + ", ".join(str(p) for p in written) + "\n")
    return 0


def _candidates(args: argparse.Namespace) -> int:
    """``--candidates``, or the deprecated ``--top-n`` (with a warning on stderr), or 100."""
    old = args.deprecated_top_n
    if old is None:
        return int(args.candidates or 100)
    if args.candidates is not None and args.candidates != old:
        raise UsageError(f"--candidates {args.candidates} and --top-n {old} disagree: give --candidates only")
    sys.stderr.write(
        "ce-rerank eval: warning: --top-n is deprecated here; use --candidates N (candidates reranked per query; "
        "in ce-rerank rerank, --top-n means results shown)\n"
    )
    return int(old)


def _print_metrics(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..evaluation import METRICS

    better, worse, same = result.changes("ndcg@10")
    table = Table(
        title=f"{result.dataset}: {result.first_stage_name} -> rerank top {result.candidates} with {result.model} "
        f"({result.queries} queries)",
        title_justify="left",
    )
    table.add_column("metric")
    table.add_column("first stage", justify="right")
    table.add_column("reranked", justify="right")
    table.add_column("change", justify="right")
    for m in METRICS:
        b, a = result.first_stage[m], result.reranked[m]
        style = "green" if a > b + 1e-12 else "red" if a < b - 1e-12 else ""
        table.add_row(m, f"{b:.4f}", f"{a:.4f}", f"[{style}]{a - b:+.4f}[/]" if style else f"{a - b:+.4f}")
    console = Console(file=sys.stdout, soft_wrap=True)
    console.print(table)
    console.print(f"NDCG@10 per query: better {better}, worse {worse}, unchanged {same}")
