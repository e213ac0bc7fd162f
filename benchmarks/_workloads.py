"""Real inputs for the speed and fidelity benchmarks, read from ../shared/data.

Every workload is a list of calls, each a (query, texts) pair, as a retriever would hand them
to a reranker:

- ``retrieval-100``: BM25 (bm25s, English stopwords) top 100 on Cranfield (aeronautics
  abstracts; 212 tokens on average, p90 353), one call per query.
- ``retrieval-1000``: BM25 top 1,000 on LISA (library-science abstracts, 108 tokens on
  average, p90 168: the length of typical RAG chunks), one call per query.
- ``wikiqa``: each WikiQA test question with its own candidate sentences (short passages,
  about 30 tokens), one call per question.

Candidates are limited to texts that fit the model's 512-token window with the query (over
99% of each corpus), so that every contender scores exactly the same pairs: past the window
our default scores overlapping windows while the peers truncate, which would make the work
different. Fidelity runs keep the long documents (see fidelity.py).
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
DATA = SHARED / "data"
MODEL = SHARED / "models" / "wikiqa-minilm-ce"

Call = tuple[str, list[str]]


@dataclass
class Collection:
    doc_ids: list[str]
    texts: list[str]
    queries: dict[str, str]  # query id -> text, in file order
    qrels: dict[str, dict[str, int]]  # query id -> doc id -> grade


def require_shared() -> None:
    if not (MODEL / "model.safetensors").exists() or not DATA.is_dir():
        raise SystemExit(f"these benchmarks need ../shared (model and data) next to the repository: {SHARED}")


def load_collection(name: str) -> Collection:
    folder = DATA / name
    doc_ids, texts = [], []
    with open(folder / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            doc_ids.append(str(d["_id"]))
            texts.append(" ".join(x for x in (d.get("title") or "", d.get("text") or "") if x).strip())
    queries = {}
    with open(folder / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            queries[str(q["_id"])] = q["text"]
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with open(folder / "qrels" / "test.tsv", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        for qid, did, grade in reader:
            qrels[qid][did] = int(grade)
    return Collection(doc_ids, texts, queries, dict(qrels))


def bm25_top(col: Collection, query_ids: list[str], k: int) -> dict[str, list[int]]:
    """BM25 top ``k`` document positions per query (bm25s, English stopwords)."""
    import bm25s

    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(col.texts, stopwords="en", show_progress=False), show_progress=False)
    tokens = bm25s.tokenize([col.queries[q] for q in query_ids], stopwords="en", show_progress=False)
    docs, _ = retriever.retrieve(tokens, k=min(k, len(col.texts)), show_progress=False, n_threads=1)
    return {q: [int(i) for i in row] for q, row in zip(query_ids, docs, strict=False)}


def _fits(tokenizer, query: str, texts: list[str], limit: int = 512) -> list[bool]:  # type: ignore[no-untyped-def]
    q = len(tokenizer(query, add_special_tokens=False)["input_ids"])
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return [q + n + 3 <= limit for n in lengths]


def retrieval_calls(dataset: str, n_candidates: int, n_queries: int) -> list[Call]:
    """The first ``n_queries`` queries with judgements, each with BM25's top candidates that fit."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(MODEL))
    col = load_collection(dataset)
    qids = [q for q in col.queries if q in col.qrels][:n_queries]
    top = bm25_top(col, qids, n_candidates + n_candidates // 10)
    calls = []
    for q in qids:
        texts = [col.texts[i] for i in top[q] if col.texts[i]]
        keep = _fits(tokenizer, col.queries[q], texts)
        texts = [t for t, ok in zip(texts, keep, strict=False) if ok][:n_candidates]
        calls.append((col.queries[q], texts))
    return calls


def wikiqa_candidates() -> dict[str, tuple[str, list[str], list[int]]]:
    """WikiQA test: question id -> (question, candidate sentences, 0/1 labels), file order."""
    col_queries = {}
    with open(DATA / "wikiqa" / "queries.jsonl", encoding="utf-8") as fh:
        for line in fh:
            q = json.loads(line)
            col_queries[str(q["_id"])] = q["text"]
    sentences = {}
    with open(DATA / "wikiqa" / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            d = json.loads(line)
            sentences[str(d["_id"])] = d["text"]
    out: dict[str, tuple[str, list[str], list[int]]] = {}
    with open(DATA / "wikiqa" / "candidates_test.tsv", encoding="utf-8") as fh:
        reader = csv.reader(fh, delimiter="\t")
        next(reader)
        for qid, did, label in reader:
            if qid not in out:
                out[qid] = (col_queries[qid], [], [])
            out[qid][1].append(sentences[did])
            out[qid][2].append(int(label))
    return out


def wikiqa_calls(n_queries: int, min_candidates: int = 10) -> list[Call]:
    """WikiQA questions with at least ``min_candidates`` candidate sentences, one call each."""
    calls = [(q, texts) for q, texts, _ in wikiqa_candidates().values() if len(texts) >= min_candidates]
    return calls[:n_queries]


WORKLOADS = {
    # name: (builder, description)
    "retrieval-100": (lambda n: retrieval_calls("cranfield", 100, n), "BM25 top 100, Cranfield abstracts"),
    "retrieval-1000": (lambda n: retrieval_calls("lisa", 1000, n), "BM25 top 1,000, LISA abstracts"),
    "wikiqa": (lambda n: wikiqa_calls(n), "WikiQA test questions, their own candidate sentences"),
}
