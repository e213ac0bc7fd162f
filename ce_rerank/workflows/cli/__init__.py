"""The ``ce-rerank`` command: ``eval``, ``rerank``, ``demo`` and ``finetune``.

- ``ce-rerank eval DATASET_DIR --model M``: first stage, rerank, metrics before and after.
- ``ce-rerank rerank --model M --query Q --docs FILE``: rerank your own documents, see what moved.
- ``ce-rerank demo``: a two-stage pipeline over the small corpus shipped with the package.
- ``ce-rerank finetune DATASET_DIR --model M --output DIR``: adapt a reranker, gated on held-out queries.

User mistakes (missing files, malformed input, unknown options, a model that cannot be
loaded) print one line to stderr, without a traceback, and exit with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from ..._local import DEFAULT_MODEL
from ...exceptions import CeRerankError
from ._common import EXIT_USAGE, PROG, UsageError, _add_model_flags, _add_threads_flag, _positive_int, _rrf_weights
from ._demo import _cmd_demo
from ._eval import _cmd_eval
from ._finetune import add_finetune_parser
from ._rerank import _cmd_rerank, read_documents

__all__ = ["UsageError", "build_parser", "main", "read_documents"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # one line, exit 2 (argparse's default prints usage too)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Cross-encoder reranking: evaluate it on your data, rerank documents, run the demo, or fine-tune "
        "it on your data.",
    )
    sub = parser.add_subparsers(dest="command", metavar="{eval,rerank,demo,finetune}", parser_class=_Parser)

    p_eval = sub.add_parser(
        "eval",
        help="measure NDCG@10, MRR@10, Recall@100 and MAP before and after reranking on a BEIR-layout dataset",
        description="First stage (BM25, dense or a TREC run), rerank its best --candidates with a cross-encoder, "
        "and compare NDCG@10, MRR@10, Recall@100 and MAP (pytrec_eval) before and after. Needs pip install "
        "'ce-rerank[eval]'.",
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
    p_eval.add_argument(
        "--candidates",
        type=_positive_int,
        default=None,
        metavar="N",
        help="candidates reranked per query (default 100)",
    )
    p_eval.add_argument(
        "--top-n",
        dest="deprecated_top_n",
        type=_positive_int,
        default=None,
        metavar="N",
        help="deprecated spelling of --candidates (in rerank, --top-n means results shown)",
    )
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
    p_eval.add_argument(
        "--rrf-weights",
        type=_rrf_weights,
        default=None,
        metavar="W_RETRIEVER,W_CE",
        help="RRF weights for --fusion rrf (default 1,1), e.g. those ce-rerank finetune chose",
    )
    p_eval.add_argument("--split", default="test", help="qrels file to use: qrels/<split>.tsv (default test)")
    p_eval.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_threads_flag(p_eval)
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
    p_rerank.add_argument(
        "--top-n", type=_positive_int, default=None, metavar="N", help="keep and show only the best N (default all)"
    )
    p_rerank.add_argument("--json", action="store_true", help="machine-readable output (one JSON object)")
    _add_threads_flag(p_rerank)
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
    p_demo.add_argument(
        "--candidates", type=_positive_int, default=10, metavar="N", help="candidates reranked per query (default 10)"
    )
    p_demo.add_argument("--show", type=_positive_int, default=3, metavar="N", help="results shown per list (default 3)")
    _add_threads_flag(p_demo)
    p_demo.set_defaults(func=_cmd_demo)

    add_finetune_parser(sub)
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
