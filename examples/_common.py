"""What the two Ollama RAG examples share: the command line, the corpus, the prompt, the report.

Not part of the ce-rerank API: a helper for ``langchain_ollama_rag.py`` and
``llamaindex_ollama_rag.py``, which import it from this directory.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ce_rerank import DEFAULT_MODEL, CrossEncoderScorer
from ce_rerank._http import ollama_url  # OLLAMA_HOST as host:port or URL (LlamaIndex ignores it)

DEMO_CORPUS = Path(str(resources.files("ce_rerank") / "data" / "demo"))
DEFAULT_QUESTION = "How do honeybees tell other bees where to find flowers?"
DEFAULT_EMBED_MODEL = "all-minilm"  # Ollama's build of all-MiniLM-L6-v2
DEFAULT_LLM = "llama3.2"
RETRIEVE_K = 50
TOP_N = 5

# The passages sit between two rule lines, one per paragraph, best first.
PROMPT = """Answer the question using only the passages below. If they do not answer it, say so.

---------------------
{context}
---------------------

Question: {question}
Answer:"""


@dataclass(frozen=True)
class Passage:
    """One corpus entry (BEIR ``corpus.jsonl``: ``_id``, ``title``, ``text``)."""

    id: str
    title: str
    text: str


class CorpusError(ValueError):
    """The --corpus directory is not a BEIR corpus."""


def load_corpus(directory: str | Path) -> list[Passage]:
    """The passages of a BEIR-layout directory (its ``corpus.jsonl``)."""
    path = Path(directory) / "corpus.jsonl"
    if not path.is_file():
        raise CorpusError(f"{path} not found: --corpus must be a BEIR directory holding corpus.jsonl")
    passages = []
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                passages.append(Passage(str(row["_id"]), str(row.get("title") or ""), str(row["text"])))
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise CorpusError(f"{path}:{line_no}: expected a JSON object with _id and text ({exc})") from exc
    if not passages:
        raise CorpusError(f"{path} holds no passages")
    return passages


class EmbeddingDimensionError(ValueError):
    """The embedding model answered vectors of another dimension than the vector store holds."""


class DimensionGuard:
    """Remembers the dimension of the first vectors (the indexed ones) and rejects any other.

    Vector stores compare vectors with numpy and fail with a shape error, or, while
    indexing, store the odd vector and fail later; this names the cause instead.
    """

    def __init__(self, model: str) -> None:
        self.model = model
        self.dimension: int | None = None

    def check(self, vectors: Sequence[Sequence[float]]) -> None:
        for vector in vectors:
            if self.dimension is None:
                self.dimension = len(vector)
            elif len(vector) != self.dimension:
                raise EmbeddingDimensionError(
                    f"embedding model {self.model!r} returned {len(vector)}-dimensional vectors, but the vector "
                    f"store holds {self.dimension}-dimensional ones: the model behind that name changed. "
                    "Re-index the corpus with this model, or query with the model it was indexed with"
                )


def parse_args(description: str, argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("question", nargs="?", default=DEFAULT_QUESTION, help="what to ask (default: %(default)r)")
    parser.add_argument("--embed-model", default=DEFAULT_EMBED_MODEL, help="Ollama embedding model")
    parser.add_argument("--llm", default=DEFAULT_LLM, help="Ollama chat model")
    parser.add_argument("--rerank-model", default=DEFAULT_MODEL, help="cross-encoder: hub id or local directory")
    parser.add_argument("--corpus", default=str(DEMO_CORPUS), help="BEIR-layout directory (default: the demo corpus)")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait for Ollama (default: 120)")
    return parser.parse_args(argv)


def load_reranker(model: str) -> None:
    """Load the cross-encoder now, so that a missing model fails before any Ollama call.

    The adapters load lazily and share one loaded model per setting, so this costs nothing later.
    """
    CrossEncoderScorer(model).load()


@dataclass(frozen=True)
class Row:
    """One reranked passage, for the report."""

    id: str
    title: str
    retrieval_rank: int
    relevance_score: float
    ce_raw_score: float

    @classmethod
    def of(cls, passage_id: str, metadata: dict) -> Row:
        """From a reranked Document's or node's metadata (the keys the reranker writes)."""
        return cls(
            passage_id,
            metadata.get("title", ""),
            metadata["retrieval_rank"],
            metadata["relevance_score"],
            metadata["ce_raw_score"],
        )


def print_report(answer: str, rows: Sequence[Row], retrieved_ids: Sequence[str], *, model: str) -> None:
    """The answer, then the reranked passages beside the retriever's ranks: what moved."""
    print(f"Answer:\n  {answer.strip()}\n")
    print(f"Reranked by {model} ({len(rows)} of {len(retrieved_ids)} retrieved):")
    print(f"  {'new':>3} {'was':>4} {'relevance':>9} {'raw':>7}  passage")
    for new_rank, row in enumerate(rows, start=1):
        moved = row.retrieval_rank - new_rank
        note = f"  (up {moved})" if moved > 0 else (f"  (down {-moved})" if moved < 0 else "")
        print(
            f"  {new_rank:>3} {row.retrieval_rank:>4} {row.relevance_score:>9.3f} {row.ce_raw_score:>7.2f}"
            f"  {row.id}: {row.title}{note}"
        )
    kept = {row.id for row in rows}
    dropped = [
        f"{doc_id} (was {rank})"
        for rank, doc_id in enumerate(retrieved_ids[: len(rows)], start=1)
        if doc_id not in kept
    ]
    if dropped:
        print(f"  pushed out of the top {len(rows)}: {', '.join(dropped)}")


def run(main: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> int:
    """Run ``main``; turn the failures a user can fix into one clear line and exit status 1."""
    import httpx
    from ollama import ResponseError

    from ce_rerank import ModelLoadError

    url = ollama_url()
    try:
        load_reranker(args.rerank_model)
        main(args)
    except ModelLoadError as exc:
        print(f"error: {exc}\n(pass --rerank-model <hub id or local directory>)", file=sys.stderr)
    except ConnectionError as exc:
        print(f"error: no Ollama at {url}: {exc} (start it with `ollama serve`, or set OLLAMA_HOST)", file=sys.stderr)
    except httpx.TimeoutException as exc:
        print(
            f"error: Ollama at {url} did not answer within {args.timeout:g} s ({type(exc).__name__}); "
            "raise --timeout for a slow model",
            file=sys.stderr,
        )
    except ResponseError as exc:
        hint = (
            " (run `ollama pull <model>`, or pick another with --embed-model/--llm)" if exc.status_code == 404 else ""
        )
        print(f"error: Ollama at {url} answered HTTP {exc.status_code}: {exc.error}{hint}", file=sys.stderr)
    except (EmbeddingDimensionError, CorpusError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    else:
        return 0
    return 1
