"""``ce-rerank demo``: a two-stage pipeline over the small corpus shipped with the package."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from ..._local import DEFAULT_MODEL
from ...exceptions import ModelLoadError
from ..evaluation._data import _require
from ._common import DEMO_DIR, UsageError, _headline, _Moved, _movements, _print_ranked, _scorer, _short

MOVED_SHOWN = 6
CARDS = ("README.md", "TRAINING.md")  # a Hugging Face model card; the training card of ../shared/models


def _moved_line(moved: list[_Moved]) -> str:
    if not moved:
        return "nothing"
    line = "; ".join(m.describe() for m in moved[:MOVED_SHOWN])
    return line + (f"; and {len(moved) - MOVED_SHOWN} more" if len(moved) > MOVED_SHOWN else "")


def describe_model(model: str, loaded: Any) -> str:
    """One line: what the model is (its config.json, and its card's first sentence where it has one), and
    that what reranking buys depends on it. ``loaded``: the scorer's loaded model, on either engine."""
    config = _config(model)
    facts = []
    architectures = list(config.get("architectures") or [])
    if architectures:
        facts.append(str(architectures[0]))
    layers = config.get("num_hidden_layers")
    if isinstance(layers, int):
        facts.append(f"{layers} layers")
    labels = getattr(loaded, "num_labels", None)
    if isinstance(labels, int):
        facts.append(f"{labels} output{'s' if labels != 1 else ''}")
    line = f"model: {model}" + (f" ({', '.join(facts)})" if facts else "")
    card = _card_sentence(model)
    line += f': "{card[1]}" ({card[0]})' if card else "; no model card found"
    return (
        line + ". Reranking quality depends on the model: one trained on text unlike yours can rank worse than "
        "the first stage"
    )


def _config(model: str) -> dict[str, Any]:
    """The model's config.json (local directory or cached hub snapshot), {} when unreadable."""
    path = _card_path(model, "config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8")) if path is not None else {}
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def _card_sentence(model: str) -> tuple[str, str] | None:
    """(card file name, its first sentence, shortened) for a local directory or a cached hub model."""
    for name in CARDS:
        path = _card_path(model, name)
        if path is None:
            continue
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        sentence = _first_sentence(text)
        if sentence:
            return name, sentence
    return None


def _card_path(model: str, name: str) -> Path | None:
    local = Path(model).expanduser() / name
    if local.is_file():
        return local
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model, name)
    except Exception:  # not a hub id, or no readable cache: no card
        return None
    return Path(found) if isinstance(found, str) else None


def _first_sentence(card: str, width: int = 140) -> str:
    """The card's first prose sentence: front matter, headings, badges and parentheses left out."""
    card = re.sub(r"\A---\n.*?\n---\n", "", card, flags=re.S)
    for block in re.split(r"\n\s*\n", card):
        lines = [ln for ln in block.strip().splitlines() if not ln.lstrip().startswith(("#", "!", "<", "|", "```"))]
        prose = " ".join(" ".join(lines).split())
        prose = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", prose).replace("**", "").replace("`", "")  # Markdown
        if len(prose) < 20:
            continue
        while re.search(r"\([^()]*\)", prose):
            prose = re.sub(r"\s*\([^()]*\)", "", prose)
        sentence = re.split(r"(?<=[.!?])\s", prose, maxsplit=1)[0].rstrip(".")
        return sentence if len(sentence) <= width else sentence[: width - 1].rstrip(" ,;:") + "…"
    return ""


def _cmd_demo(args: argparse.Namespace) -> int:
    from ..._reranker import Reranker
    from .. import evaluation as ev

    if not (DEMO_DIR / "corpus.jsonl").is_file():
        raise UsageError(f"the demo corpus is missing from this installation ({DEMO_DIR}): reinstall ce-rerank")
    data = ev.load_beir(DEMO_DIR)
    kind, _, arg = args.first_stage.partition(":")
    if not ((kind == "bm25" and not arg) or (kind == "dense" and arg)):
        raise UsageError(f"unknown first stage {args.first_stage!r}: use bm25 or dense:MODEL")
    if args.query is not None and not args.query.strip():
        raise UsageError("--query is empty: give a question, or leave --query out to run the demo's questions")
    _require("bm25s" if kind == "bm25" else "sentence_transformers", "the demo's first stage")
    _require("pytrec_eval", "the demo's before/after metrics")
    try:
        scorer = _scorer(args)
    except ModelLoadError as exc:
        if args.model == DEFAULT_MODEL and not Path(args.model).exists():
            raise UsageError(
                f"the default cross-encoder {DEFAULT_MODEL!r} cannot be fetched from the Hugging Face hub "
                "(no network, or the hub is unreachable). Point --model at a local cross-encoder directory, "
                "e.g. `ce-rerank demo --model path/to/model` (a folder with config.json, the weights and the "
                "tokenizer files, as written by CrossEncoder.save_pretrained), or run once where the hub is "
                "reachable so that the model is cached. On a machine without network, set HF_HUB_OFFLINE=1 so "
                "that nothing waits for the hub"
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
    out.write(describe_model(args.model, scorer.load()) + "\n")
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
        out.write(f"  moved: {_moved_line(moved)}\n")
    if qrels:
        qids = list(queries)
        before, _ = ev.evaluate_run(qrels, run, query_ids=qids)
        after, _ = ev.evaluate_run(qrels, reranked_run, query_ids=qids)
        out.write(f"\nover the demo's {len(qids)} questions (candidates: {first_name} top {args.candidates}):\n")
        for m in ("ndcg@10", "mrr@10"):
            out.write(f"  {m:<8} {before[m]:.4f} -> {after[m]:.4f} ({after[m] - before[m]:+.4f})\n")
    return 0
