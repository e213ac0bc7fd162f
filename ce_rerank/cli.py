"""The ``ce-rerank`` command: ``eval``, ``rerank`` and ``demo``.

- ``ce-rerank eval DATASET_DIR --model M``: first stage, rerank, metrics before and after.
- ``ce-rerank rerank --model M --query Q --docs FILE``: rerank your own documents, see what moved.
- ``ce-rerank demo``: a two-stage pipeline over the small corpus shipped with the package.

User mistakes (missing files, malformed input, unknown options, a model that cannot be
loaded) print one line to stderr, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from ._local import DEFAULT_MODEL
from .exceptions import CeRerankError, ModelLoadError

__all__ = ["main"]

PROG = "ce-rerank"
DEMO_DIR = Path(__file__).parent / "data" / "demo"
EXIT_USAGE = 2


class UsageError(Exception):
    """A user mistake: reported in one line, exit status 2."""


# -- shared helpers ------------------------------------------------------------------------


def _quiet_libraries() -> None:
    """No weight-loading progress bars from transformers on the user's terminal."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        hf_logging.set_verbosity_error()
    except ImportError:  # pragma: no cover - transformers is a hard dependency
        pass


def _scorer(args: argparse.Namespace) -> Any:
    """Build the cross-encoder scorer from the common flags and load it now (fail before work)."""
    from ._local import CrossEncoderScorer

    _quiet_libraries()
    scorer = CrossEncoderScorer(
        args.model,
        device=args.device,
        dtype=args.dtype,
        quantize=args.quantize,
        batch_size=args.batch_size,
        long_text=args.long_text,
    )
    scorer.load()
    return scorer


def _add_model_flags(p: argparse.ArgumentParser, *, default_model: str | None) -> None:
    if default_model is None:
        p.add_argument("--model", required=True, help="cross-encoder: a Hugging Face hub id or a local directory")
    else:
        p.add_argument(
            "--model",
            default=default_model,
            help=f"cross-encoder: a Hugging Face hub id or a local directory (default: {default_model})",
        )
    p.add_argument("--device", default="auto", help="'auto' (cuda, then mps, then cpu) or a torch device")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", "float32", "bfloat16", "float16"],
        help="precision: 'auto' is float16 on CUDA, bfloat16 autocast on CPUs with native bfloat16, float32 "
        "elsewhere; 'float32' gives exact scores",
    )
    p.add_argument(
        "--quantize",
        default="auto",
        choices=["auto", "none", "int8"],
        help="'int8': dynamic int8 linear layers on CPU; faster, but it failed the fidelity gate on WikiQA, so "
        "'auto' never picks it",
    )
    p.add_argument("--batch-size", type=_positive_int, default=32, help="most pairs per forward pass (default 32)")
    p.add_argument(
        "--long-text",
        default="window",
        choices=["window", "truncate"],
        help="texts longer than the model window: score overlapping windows and keep the best (default), or truncate",
    )


def _positive_int(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {value!r}")
    return n


def _short(text: str, width: int) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= width else one_line[: width - 1] + "…"


@dataclass(frozen=True)
class _Moved:
    doc_id: str
    was: int
    now: int

    def describe(self) -> str:
        step = self.was - self.now
        return f"{self.doc_id}: {self.was} -> {self.now} ({'up' if step > 0 else 'down'} {abs(step)})"


def _movements(ids: list[str], ranked: list[Any]) -> list[_Moved]:
    return [
        _Moved(ids[c.index], c.retrieval_rank, new) for new, c in enumerate(ranked, start=1) if c.retrieval_rank != new
    ]


def _headline(ids: list[str], ranked: list[Any], first_stage: str = "the retriever") -> str:
    if not ranked:
        return "nothing to rerank"
    top = ranked[0]
    if top.retrieval_rank == 1:
        return f"{first_stage}'s first result {ids[top.index]} stayed first"
    return (
        f"reranking moved {ids[top.index]} (score: {top.relevance_score:.2f}) from position "
        f"{top.retrieval_rank} to first position"
    )


def _print_ranked(
    out: TextIO,
    ids: list[str],
    texts: list[str],
    ranked: list[Any],
    *,
    marks: dict[str, str] | None = None,
    width: int = 60,
) -> None:
    marks = marks or {}
    out.write(f"  {'rank':>4} {'was':>4} {'relevance':>9} {'raw':>8}  id\n")
    for new, c in enumerate(ranked, start=1):
        step = c.retrieval_rank - new
        arrow = f"up {step}" if step > 0 else f"down {-step}" if step < 0 else "="
        did = ids[c.index]
        mark = f" [{marks[did]}]" if did in marks else ""
        out.write(
            f"  {new:>4} {c.retrieval_rank:>4} {c.relevance_score:>9.4f} {c.ce_raw_score:>8.3f}  "
            f"{did} ({arrow}){mark}  {_short(texts[c.index], width)}\n"
        )


# -- rerank ----------------------------------------------------------------------------------


def read_documents(source: str, stdin: TextIO | None = None) -> tuple[list[str], list[str]]:
    """Read ``(ids, texts)`` from a file or ``-`` (stdin).

    JSONL (every non-blank line a JSON object with a string ``text`` and an optional ``id``)
    when the first non-blank line is a JSON object or the file ends in ``.jsonl``; otherwise one
    text per non-blank line, whose id is its line number.
    """
    if source == "-":
        name, lines = "<stdin>", (stdin or sys.stdin).read().splitlines()
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise UsageError(f"--docs: no such file {source!r} (give a JSONL or text file, or - for stdin)")
        name = str(source)
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as exc:
            raise UsageError(f"{name}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    numbered = [(n, line) for n, line in enumerate(lines, start=1) if line.strip()]
    if not numbered:
        raise UsageError(f"{name}: no documents (the input is empty)")
    as_jsonl = source.endswith(".jsonl") or numbered[0][1].lstrip().startswith("{")
    ids: list[str] = []
    texts: list[str] = []
    if not as_jsonl:
        for n, line in numbered:
            ids.append(str(n))
            texts.append(line.strip())
        return ids, texts
    seen: set[str] = set()
    for n, line in numbered:
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UsageError(
                f"{name} line {n}: malformed JSONL ({exc.msg}, column {exc.colno}); "
                'each line must be a JSON object like {"id": "d1", "text": "..."}'
            ) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
            raise UsageError(f'{name} line {n}: expected a JSON object with a string "text" field')
        did = str(obj["id"]) if obj.get("id") is not None else str(n)
        if did in seen:
            raise UsageError(f"{name} line {n}: duplicate id {did!r}; ids must be unique")
        seen.add(did)
        ids.append(did)
        texts.append(obj["text"])
    return ids, texts


def _cmd_rerank(args: argparse.Namespace) -> int:
    from ._reranker import Reranker

    if not args.query.strip():
        raise UsageError("--query is empty: give the question or search string to rerank against")
    ids, texts = read_documents(args.docs)
    scorer = _scorer(args)
    start = time.perf_counter()
    ranked = Reranker(scorer, top_n=args.top_n).rerank(args.query, texts, ids=ids)
    ms = (time.perf_counter() - start) * 1000.0
    moved = _movements(ids, ranked)
    if args.json:
        payload = {
            "query": args.query,
            "model": args.model,
            "results": [
                {
                    "rank": new,
                    "id": ids[c.index],
                    "retrieval_rank": c.retrieval_rank,
                    "relevance_score": c.relevance_score,
                    "ce_raw_score": c.ce_raw_score,
                    **({"ce_best_span": list(c.ce_best_span)} if c.ce_best_span else {}),
                }
                for new, c in enumerate(ranked, start=1)
            ],
            "original_order": ids,
            "moved": [{"id": m.doc_id, "from": m.was, "to": m.now} for m in moved],
        }
        sys.stdout.write(json.dumps(payload, ensure_ascii=False) + "\n")
        return 0
    out = sys.stdout
    out.write(f"query: {args.query}\nmodel: {args.model} ({len(texts)} documents, {ms:.0f} ms)\n\n")
    out.write(f"reranked ({len(ranked)} of {len(texts)}):\n")
    _print_ranked(out, ids, texts, ranked)
    out.write(f"\noriginal order: {', '.join(ids)}\n")
    out.write(f"{_headline(ids, ranked, 'the input')}\n")
    if moved:
        out.write("moved: " + "; ".join(m.describe() for m in moved) + "\n")
    else:
        out.write("moved: nothing (the reranker kept the input order)\n")
    return 0


# -- eval ------------------------------------------------------------------------------------


def _cmd_eval(args: argparse.Namespace) -> int:
    from . import evaluation as ev
    from ._reranker import Reranker

    # Check everything cheap before loading the model and running the first stage.
    data = ev.load_beir(args.dataset, split=args.split)
    kind, _, arg = args.first_stage.partition(":")
    if not ((kind == "bm25" and not arg) or (kind in ("dense", "run") and arg)):
        raise UsageError(
            f"unknown first stage {args.first_stage!r}: use bm25, dense:MODEL (a sentence-transformers model) "
            "or run:FILE (a TREC run file)"
        )
    if kind == "run" and not Path(arg).expanduser().is_file():
        raise UsageError(f"--first-stage run:{arg}: no such file")
    ev._require("pytrec_eval", "computing metrics")
    ev._require("rich", "the progress bar and the metrics table")
    if args.output is not None:
        ev._require("matplotlib", "the per-query plot")
    scorer = _scorer(args)
    reranker = Reranker(scorer, top_n=None, fusion=args.fusion)
    result = ev.evaluate_reranking(
        data,
        reranker,
        first_stage=args.first_stage,
        top_n=args.top_n,
        max_queries=args.max_queries,
        progress=not args.no_progress,
    )
    _print_metrics(result)
    if args.output is not None:
        written = result.save(args.output)
        sys.stdout.write("wrote " + ", ".join(str(p) for p in written) + "\n")
    return 0


def _print_metrics(result: Any) -> None:
    from rich.console import Console
    from rich.table import Table

    from .evaluation import METRICS

    better, worse, same = result.changes("ndcg@10")
    table = Table(
        title=f"{result.dataset}: {result.first_stage_name} -> rerank top {result.top_n} with {result.model} "
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


# -- demo ------------------------------------------------------------------------------------


def _cmd_demo(args: argparse.Namespace) -> int:
    from . import evaluation as ev
    from ._reranker import Reranker

    if not (DEMO_DIR / "corpus.jsonl").is_file():
        raise UsageError(f"the demo corpus is missing from this installation ({DEMO_DIR}): reinstall ce-rerank")
    data = ev.load_beir(DEMO_DIR)
    kind, _, arg = args.first_stage.partition(":")
    if not ((kind == "bm25" and not arg) or (kind == "dense" and arg)):
        raise UsageError(f"unknown first stage {args.first_stage!r}: use bm25 or dense:MODEL")
    if args.query is not None and not args.query.strip():
        raise UsageError("--query is empty: give a question, or leave --query out to run the demo's questions")
    ev._require("bm25s" if kind == "bm25" else "sentence_transformers", "the demo's first stage")
    ev._require("pytrec_eval", "the demo's before/after metrics")
    try:
        scorer = _scorer(args)
    except ModelLoadError as exc:
        if args.model == DEFAULT_MODEL and not Path(args.model).exists():
            raise UsageError(
                f"the default cross-encoder {DEFAULT_MODEL!r} cannot be fetched from the Hugging Face hub "
                "(no network, or the hub is unreachable). Point --model at a local cross-encoder directory, "
                "e.g. `ce-rerank demo --model path/to/model` (a folder with config.json, the weights and the "
                "tokenizer files, as written by CrossEncoder.save_pretrained), or run once where the hub is "
                "reachable so that the model is cached"
            ) from exc
        raise

    if args.query is not None:
        queries = {"your-query": args.query}
        qrels: dict[str, dict[str, int]] = {}
    else:
        queries = {q: data.queries[q] for q in data.judged_queries}
        qrels = data.qrels
    run_data = ev.Dataset(name=data.name, corpus=data.corpus, queries=queries, qrels=qrels)
    if kind == "bm25":
        first_name = "BM25"
        run = ev.bm25_run(run_data, top_k=args.candidates, query_ids=list(queries))
    else:
        first_name = f"dense retriever {arg}"
        run = ev.dense_run(run_data, arg, top_k=args.candidates, query_ids=list(queries))
    reranker = Reranker(scorer, top_n=None)
    reranked_run: ev.Run = {}
    out = sys.stdout
    out.write(
        f"ce-rerank demo: {len(data.corpus)} passages (ce_rerank/data/demo); first stage {first_name}, "
        f"top {args.candidates} reranked by {args.model}\n"
    )
    labels = {2: "answer", 1: "helps"}
    for qid, text in queries.items():
        ids = ev.ranked_ids(run[qid])
        texts = [data.corpus[d] for d in ids]
        marks = {d: labels.get(g, str(g)) for d, g in qrels.get(qid, {}).items() if g >= 1}
        out.write(f"\nquery: {text}\n")
        if not ids:
            out.write(f"  {first_name} found nothing that shares a word with the query\n")
            continue
        out.write(f"{first_name} top {min(args.show, len(ids))} (score):\n")
        for pos, did in enumerate(ids[: args.show], start=1):
            mark = f" [{marks[did]}]" if did in marks else ""
            out.write(f"  {pos:>4} {run[qid][did]:>8.3f}  {did}{mark}  {_short(data.corpus[did], 60)}\n")
        ranked = reranker.rerank(text, texts, ids=ids)
        reranked_run[qid] = {ids[c.index]: float(c.ce_raw_score or 0.0) for c in ranked}
        out.write(f"reranked top {min(args.show, len(ranked))} (relevance_score, raw logit):\n")
        _print_ranked(out, ids, texts, ranked[: args.show], marks=marks)
        out.write(f"  {_headline(ids, ranked, first_name)}\n")
        moved = _movements(ids, ranked)
        out.write("  moved: " + ("; ".join(m.describe() for m in moved[:6]) if moved else "nothing") + "\n")
    if qrels:
        qids = list(queries)
        before, _ = ev.evaluate_run(qrels, run, query_ids=qids)
        after, _ = ev.evaluate_run(qrels, reranked_run, query_ids=qids)
        out.write(f"\nover the demo's {len(qids)} questions (candidates: {first_name} top {args.candidates}):\n")
        for m in ("ndcg@10", "mrr@10"):
            out.write(f"  {m:<8} {before[m]:.4f} -> {after[m]:.4f} ({after[m] - before[m]:+.4f})\n")
    return 0


# -- entry point ---------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's default prints usage too)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Cross-encoder reranking: evaluate it on your data, rerank documents, or run the demo.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{eval,rerank,demo}", parser_class=_Parser)

    p_eval = sub.add_parser(
        "eval",
        help="measure NDCG@10, MRR@10, Recall@100 and MAP before and after reranking on a BEIR-layout dataset",
        description="First stage (BM25, dense or a TREC run), rerank the top N with a cross-encoder, and compare "
        "NDCG@10, MRR@10, Recall@100 and MAP (pytrec_eval) before and after. Needs pip install 'ce-rerank[eval]'.",
    )
    p_eval.add_argument(
        "dataset", metavar="DATASET_DIR", help="folder with corpus.jsonl, queries.jsonl, qrels/test.tsv"
    )
    _add_model_flags(p_eval, default_model=None)
    p_eval.add_argument(
        "--first-stage",
        default="bm25",
        metavar="bm25|dense:MODEL|run:FILE",
        help="the candidates: BM25 (bm25s), a sentence-transformers model, or a TREC run file (default bm25)",
    )
    p_eval.add_argument("--top-n", type=_positive_int, default=100, help="candidates reranked per query (default 100)")
    p_eval.add_argument(
        "--output",
        metavar="DIR",
        help="write metrics.json, first_stage.run, reranked.run, per_query.tsv and ndcg10_per_query.png here",
    )
    p_eval.add_argument(
        "--max-queries", type=_positive_int, default=None, help="evaluate only the first N judged queries"
    )
    p_eval.add_argument(
        "--fusion",
        choices=["rrf"],
        default=None,
        help="fuse the first stage's order with the cross-encoder's (Reciprocal Rank Fusion, k=60) instead of "
        "replacing it",
    )
    p_eval.add_argument("--split", default="test", help="qrels file to use: qrels/<split>.tsv (default test)")
    p_eval.add_argument("--no-progress", action="store_true", help="no progress bar")
    p_eval.set_defaults(func=_cmd_eval)

    p_rerank = sub.add_parser(
        "rerank",
        help="rerank documents for one query and show what moved",
        description="Rerank documents for a query: prints the new order with relevance_score (0-1) and the raw "
        'score, the original order and what moved. Documents: JSONL lines {"id": ..., "text": ...}, or one '
        "text per line (its id is its line number); '-' reads stdin.",
    )
    _add_model_flags(p_rerank, default_model=None)
    p_rerank.add_argument("--query", required=True, help="the query to rerank against")
    p_rerank.add_argument("--docs", required=True, metavar="FILE", help="JSONL or one text per line; - for stdin")
    p_rerank.add_argument("--top-n", type=_positive_int, default=None, help="show only the best N (default all)")
    p_rerank.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
    p_rerank.set_defaults(func=_cmd_rerank)

    p_demo = sub.add_parser(
        "demo",
        help="two-stage retrieval (BM25, then the cross-encoder) over a small built-in corpus",
        description="Retrieve from the 42-passage corpus shipped with ce-rerank (BM25 in memory, no server), "
        "rerank with a cross-encoder, and print the retriever's results, the reranked ones with scores, and "
        "what moved. Needs pip install 'ce-rerank[eval]' for BM25 and the metrics.",
    )
    _add_model_flags(p_demo, default_model=DEFAULT_MODEL)
    p_demo.add_argument("--query", help="your own question (default: the demo's seven questions)")
    p_demo.add_argument("--first-stage", default="bm25", metavar="bm25|dense:MODEL", help="first stage (default bm25)")
    p_demo.add_argument("--candidates", type=_positive_int, default=10, help="candidates reranked (default 10)")
    p_demo.add_argument("--show", type=_positive_int, default=3, help="results shown per list (default 3)")
    p_demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except (UsageError, CeRerankError, ImportError, ValueError, FileNotFoundError) as exc:
        sys.stderr.write(f"{PROG} {args.command}: error: {_one_line(str(exc))}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write(f"{PROG} {args.command}: interrupted\n")
        return 130


def _one_line(message: str) -> str:
    return " ".join(message.split())


if __name__ == "__main__":
    sys.exit(main())
