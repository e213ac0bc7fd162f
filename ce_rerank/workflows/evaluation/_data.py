"""BEIR-layout datasets and TREC run files: loading, writing, and the errors that name what to fix."""

from __future__ import annotations

import csv
import importlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

from ...exceptions import CeRerankError

EXTRA = "ce-rerank[eval]"

#: query id -> document id -> score (higher is better), the shape pytrec_eval and TREC run files use.
Run = dict[str, dict[str, float]]

#: Depth of every first-stage run: Recall@100 needs 100 candidates even when fewer are reranked.
MIN_DEPTH = 100


class DatasetError(CeRerankError, ValueError):
    """A dataset directory, run file or documents file is missing or malformed.

    The message names the file (and the line, where there is one) and what to fix.
    """


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"pytrec_eval": "pytrec-eval-terrier"}.get(module, module)
        raise ImportError(f"{purpose} needs the optional package {package!r}: pip install '{EXTRA}'") from exc


# -- loading ---------------------------------------------------------------------------------


def doc_text(title: str | None, text: str | None) -> str:
    """The text a document is retrieved and reranked by: ``title + " " + text``, as BEIR does.

    A title that the text already starts with (Cranfield repeats it) is not doubled.
    """
    title = (title or "").strip()
    text = (text or "").strip()
    if not title or text.startswith(title):
        return text
    return f"{title} {text}".strip()


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path} line {lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
            if not isinstance(obj, dict) or "_id" not in obj:
                raise DatasetError(f"{path} line {lineno}: expected a JSON object with an '_id' field")
            yield lineno, obj


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and row[0].strip() == "query-id":
                continue
            if len(row) != 3:
                raise DatasetError(
                    f"{path} line {lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                    f"got {len(row)}"
                )
            qid, did, score = (x.strip() for x in row)
            try:
                grade = int(float(score))
            except ValueError as exc:
                raise DatasetError(f"{path} line {lineno}: score {score!r} is not a number") from exc
            qrels.setdefault(qid, {})[did] = grade
    return qrels


@dataclass(frozen=True)
class Dataset:
    """A BEIR-layout test collection held in memory.

    Attributes:
        name: the directory's name.
        corpus: document id -> text to retrieve and rerank by (see :func:`doc_text`).
        queries: query id -> query text, every query of ``queries.jsonl``.
        qrels: query id -> document id -> relevance grade (>= 1 is relevant).
    """

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def judged_queries(self) -> list[str]:
        """Ids of the queries that have at least one relevant document, in ``queries.jsonl`` order.

        These are the queries evaluated (queries without judgments say nothing about quality).
        """
        return [q for q in self.queries if any(g >= 1 for g in self.qrels.get(q, {}).values())]

    def with_queries(self, queries: Mapping[str, str], qrels: Mapping[str, dict[str, int]]) -> Dataset:
        """The same corpus with ``queries`` and their ``qrels`` added (e.g. training queries written for it)."""
        return replace(self, queries={**self.queries, **queries}, qrels={**self.qrels, **qrels})

    def subset(self, max_queries: int | None) -> Dataset:
        """The same dataset restricted to its first ``max_queries`` judged queries (file order)."""
        if max_queries is None:
            return self
        if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1:
            raise ValueError(f"max_queries must be an integer >= 1 or None (all), got {max_queries!r}")
        keep = self.judged_queries[:max_queries]
        return Dataset(
            name=self.name,
            corpus=self.corpus,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
        )


def load_beir(path: str | os.PathLike[str], *, split: str = "test") -> Dataset:
    """Load a BEIR-layout dataset directory.

    Raises:
        DatasetError: a file is missing or malformed, or no judged query has a text.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"dataset directory {str(root)!r} does not exist: give a folder with corpus.jsonl, queries.jsonl "
            f"and qrels/{split}.tsv (the BEIR layout)"
        )
    files = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
    }
    for label, f in files.items():
        if not f.is_file():
            raise DatasetError(f"{root} has no {f.relative_to(root)}: a BEIR-layout dataset needs it ({label})")
    corpus: dict[str, str] = {}
    for _, obj in _read_jsonl(files["corpus"]):
        corpus[str(obj["_id"])] = doc_text(obj.get("title"), obj.get("text"))
    queries: dict[str, str] = {}
    for lineno, obj in _read_jsonl(files["queries"]):
        text = obj.get("text")
        if not isinstance(text, str):
            raise DatasetError(f"{files['queries']} line {lineno}: expected a string 'text' field")
        queries[str(obj["_id"])] = text
    qrels = _read_qrels(files["qrels"])
    data = Dataset(name=root.resolve().name, corpus=corpus, queries=queries, qrels=qrels)
    if not corpus:
        raise DatasetError(f"{files['corpus']} holds no documents")
    if not data.judged_queries:
        raise DatasetError(
            f"no query of {files['queries']} has a relevant document in {files['qrels']}: check that the "
            "query ids match"
        )
    return data


# -- runs ------------------------------------------------------------------------------------


def ranked_ids(scores: dict[str, float]) -> list[str]:
    """Document ids best first, ties broken as ``trec_eval`` breaks them (document id, descending)."""
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def read_trec_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run file: ``query-id Q0 doc-id rank score tag`` per line (whitespace separated)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"run file {str(p)!r} does not exist")
    run: Run = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 6:
                raise DatasetError(
                    f"{p} line {lineno}: a TREC run line has 6 fields (query-id Q0 doc-id rank score tag), "
                    f"got {len(fields)}"
                )
            try:
                score = float(fields[4])
            except ValueError as exc:
                raise DatasetError(f"{p} line {lineno}: score {fields[4]!r} is not a number") from exc
            run.setdefault(fields[0], {})[fields[2]] = score
    if not run:
        raise DatasetError(f"run file {p} is empty")
    return run


def write_trec_run(run: Run, path: str | os.PathLike[str], *, tag: str) -> None:
    """Write a run as a TREC run file (ranks from 1, best first).

    Scores are written in full (the shortest text that reads back as the same float): fused RRF
    scores can differ below the sixth decimal, and rounded there they would tie, which ``trec_eval``
    breaks by document id, so the file would no longer rank (or score) as the run did.
    """
    tag = "_".join(tag.split()) or "run"
    with Path(path).open("w", encoding="utf-8") as fh:
        for qid, scores in run.items():
            for rank, did in enumerate(ranked_ids(scores), start=1):
                fh.write(f"{qid} Q0 {did} {rank} {float(scores[did])!r} {tag}\n")


def _cut(run: Run, depth: int) -> Run:
    return {q: {d: s[d] for d in ranked_ids(s)[:depth]} for q, s in run.items()}
