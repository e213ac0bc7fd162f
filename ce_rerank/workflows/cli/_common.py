"""Helpers shared by the subcommands: model flags, the scorer they build, and the ranked-list printing."""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

PROG = "ce-rerank"
DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"
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
    from ..._local import CrossEncoderScorer

    _quiet_libraries()
    threads = getattr(args, "threads", None)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    scorer = CrossEncoderScorer(
        args.model,
        device=args.device,
        dtype=args.dtype,
        quantize=args.quantize,
        backend=args.backend,
        batch_size=args.batch_size,
        long_text=args.long_text,
        prompt=args.prompt,
        prompt_name=args.prompt_name,
        max_query_tokens=args.max_query_tokens,
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
        help="'int8': NNCF static int8 on OpenVINO, dynamic int8 linear layers on torch; faster, but neither "
        "passed the fidelity gate, so 'auto' never picks it",
    )
    p.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "torch", "openvino"],
        help="engine: 'auto' is OpenVINO on the CPU when the openvino extra is installed (the model is converted "
        "once and cached), torch otherwise",
    )
    p.add_argument("--batch-size", type=_positive_int, default=32, help="most pairs per forward pass (default 32)")
    p.add_argument(
        "--long-text",
        default="window",
        choices=["window", "truncate"],
        help="texts longer than the model window: score overlapping windows and keep the best (default), or truncate",
    )
    prompt = p.add_mutually_exclusive_group()
    prompt.add_argument(
        "--prompt",
        default=None,
        help="instruction for instruction-following (LLM) rerankers, as CrossEncoder.predict(prompt=...) takes it",
    )
    prompt.add_argument("--prompt-name", default=None, help="one of the model's saved prompts, by name")
    p.add_argument(
        "--max-query-tokens",
        type=_positive_int,
        default=None,
        help="most tokens of the query; a longer one is cut, with a warning (default: half the model window)",
    )


def _add_threads_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--threads",
        type=_positive_int,
        default=None,
        metavar="N",
        help="CPU threads for the model (torch.set_num_threads); on a machine busy with other work, 1 can be "
        "much faster than the default (one per core)",
    )


def _number(
    parse: Callable[[str], Any], ok: Callable[[Any], bool], expected: str, hint: str = ""
) -> Callable[[str], Any]:
    """An argparse ``type``: ``parse`` the value and check it with ``ok``, else "expected <expected>[hint], got ..."."""

    def check(value: str) -> Any:
        try:
            x = parse(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value!r}") from None
        if not ok(x):
            raise argparse.ArgumentTypeError(f"expected {expected}{hint}, got {value!r}")
        return x

    return check


_positive_int = _number(int, lambda n: n >= 1, "a whole number >= 1")
_rrf_weights = _number(
    lambda text: tuple(float(w) for w in text.split(",")),
    lambda ws: len(ws) == 2 and all(math.isfinite(w) and w >= 0 for w in ws) and any(ws),
    "two non-negative RRF weights W_RETRIEVER,W_CE, not both 0",
    " (e.g. 0.6,0.4)",
)


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
