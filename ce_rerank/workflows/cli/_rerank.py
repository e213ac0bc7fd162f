"""``ce-rerank rerank``: rerank your own documents for one query and show what moved."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from ._common import UsageError, _headline, _movements, _print_ranked, _scorer


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
    from ..._reranker import Reranker

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
