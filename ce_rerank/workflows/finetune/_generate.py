"""Training queries for a corpus without labels: a local LLM (Ollama) writes a question per sampled passage.

InPars (Bonifacio et al., 2022) and Promptagator (Dai et al., ICLR 2023): a few-shot prompt asks
an LLM for a question that a passage answers; the (question, passage) pair is a positive. Their
consistency filter is kept: a generated question survives only if the base reranker puts its
source passage among the best :data:`CONSISTENCY_TOP` of the first stage's candidates for it.
The few-shot examples are fixed (written for this package), never the user's evaluation queries,
so the held-out evaluation stays held out.

Ollama is called over its HTTP API with ``httpx`` (``POST /api/generate``, ``GET /api/tags``);
``OLLAMA_HOST`` picks the server (default ``127.0.0.1:11434``).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from ..._http import ollama_url, server_message
from ..._scores import Scorer
from ...exceptions import CeRerankError
from ..evaluation._data import Dataset, Run, ranked_ids
from ..evaluation._pipeline import tracked

#: A generated question is kept when the base reranker ranks its source passage this high or better.
CONSISTENCY_TOP = 3
#: The query the scorer's window plan is made for when a passage is sampled (a question of typical length).
_PLANNING_QUERY = "what does this passage say about the topic it describes"
GENERATED_PREFIX = "gen-"

FEW_SHOT: tuple[tuple[str, str], ...] = (
    (
        "The Eiffel Tower was built for the 1889 World's Fair in Paris. At 330 metres it was the tallest "
        "structure in the world until the Chrysler Building was finished in 1930.",
        "when was the eiffel tower the tallest structure in the world",
    ),
    (
        "Dynamic int8 quantisation stores the weights of linear layers as 8-bit integers and quantises "
        "activations on the fly, which speeds up inference on CPUs at a small cost in accuracy.",
        "how does dynamic int8 quantization speed up cpu inference",
    ),
    (
        "Patients with type 2 diabetes who walked for 30 minutes a day had lower fasting glucose after "
        "twelve weeks than those in the control group.",
        "effect of daily walking on blood glucose in type 2 diabetes",
    ),
)


class QueryGenerationError(CeRerankError, RuntimeError):
    """The LLM server could not be reached, does not serve the model, or answered nothing usable."""


def build_prompt(passage: str) -> str:
    """The few-shot prompt asking for one question that ``passage`` answers."""
    shots = "\n\n".join(f"Passage: {p}\nQuestion: {q}" for p, q in FEW_SHOT)
    body = " ".join(passage.split())
    return (
        "Write one question that the passage answers, the way a person would type it into a search box. "
        "Answer with the question only.\n\n"
        f"{shots}\n\nPassage: {body}\nQuestion:"
    )


def _clean(reply: str) -> str:
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    if not lines:
        return ""
    text = lines[0]
    if text.lower().startswith("question:"):
        text = text[len("question:") :].strip()
    return text.strip("\"'` ").strip()


class OllamaQueryGenerator:
    """Asks an Ollama model for questions about passages (``POST /api/generate``, not streamed).

    Args:
        model: the Ollama model name (as in ``ollama pull MODEL``).
        host: server address; default ``OLLAMA_HOST`` or ``127.0.0.1:11434``.
        seed: sent as the ``seed`` option, with temperature 0, so answers repeat.
        timeout_s: per request.
    """

    def __init__(self, model: str, *, host: str | None = None, seed: int = 13, timeout_s: float = 120.0) -> None:
        if not model.strip():
            raise ValueError("the Ollama model name is empty: use --generate-queries ollama:MODEL (e.g. llama3.2)")
        self.model = model
        self.url = ollama_url(host)
        self.seed = seed
        self.timeout_s = timeout_s
        self._client: Any = None

    def _http(self) -> Any:
        if self._client is None:
            try:
                import httpx
            except ImportError as exc:
                raise ImportError("generating queries needs httpx: pip install 'ce-rerank[train]'") from exc
            self._client = httpx.Client(base_url=self.url, timeout=self.timeout_s)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        try:
            response = self._http().request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise QueryGenerationError(
                f"could not reach Ollama at {self.url} ({type(exc).__name__}: {exc}): start it with `ollama serve`, "
                "or set OLLAMA_HOST to where it runs"
            ) from exc
        if response.status_code == 404 and path == "/api/generate":
            raise QueryGenerationError(
                f"Ollama at {self.url} does not have {self.model!r}: run `ollama pull {self.model}`"
            )
        if response.status_code >= 400:
            raise QueryGenerationError(
                f"Ollama at {self.url} answered {response.status_code} on {path}: {server_message(response)}"
            )
        try:
            return response.json()
        except ValueError as exc:
            raise QueryGenerationError(f"Ollama at {self.url} answered {path} with something that is not JSON") from exc

    def check(self) -> None:
        """Fail now (before any long work) unless the server answers and lists the model."""
        tags = self._request("GET", "/api/tags")
        names = {str(m.get("name", "")) for m in tags.get("models", []) if isinstance(m, dict)}
        base = {n.removesuffix(":latest") for n in names}
        if self.model not in names and self.model.removesuffix(":latest") not in base:
            raise QueryGenerationError(
                f"Ollama at {self.url} does not have {self.model!r} (it has: {', '.join(sorted(base)) or 'nothing'}): "
                f"run `ollama pull {self.model}`"
            )

    def question(self, passage: str) -> str:
        """One question that ``passage`` answers ('' when the model gave none)."""
        body = {
            "model": self.model,
            "prompt": build_prompt(passage),
            "stream": False,
            "options": {"temperature": 0, "seed": self.seed, "num_predict": 64},
        }
        answer = self._request("POST", "/api/generate", json=body)
        return _clean(str(answer.get("response", "")))


@dataclass
class GeneratedQueries:
    """Questions written for sampled passages.

    Attributes:
        queries: generated query id (``gen-1``, ...) -> question.
        sources: generated query id -> the document id its passage came from.
        passages: generated query id -> the passage (a window of the document) it was asked about.
        stats: passages sampled, questions empty or repeated, kept by the consistency filter.
    """

    queries: dict[str, str]
    sources: dict[str, str]
    passages: dict[str, str]
    stats: dict[str, Any]

    def qrels(self) -> dict[str, dict[str, int]]:
        """Each generated question judges its source document relevant."""
        return {q: {d: 1} for q, d in self.sources.items()}


def generate_queries(
    dataset: Dataset,
    scorer: Any,
    generator: OllamaQueryGenerator,
    *,
    count: int,
    seed: int = 13,
    progress: bool = False,
) -> GeneratedQueries:
    """Sample ``count`` documents (seeded), take one scorer window of each, ask the LLM for a question."""
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    rng = random.Random(seed)
    ids = sorted(d for d, t in dataset.corpus.items() if t.strip())
    chosen = rng.sample(ids, min(count, len(ids)))
    queries: dict[str, str] = {}
    sources: dict[str, str] = {}
    passages: dict[str, str] = {}
    empty = repeated = 0
    seen: set[str] = set()
    prefix = GENERATED_PREFIX
    while any(q.startswith(prefix) for q in dataset.queries):  # never collide with the user's query ids
        prefix = f"{prefix}{GENERATED_PREFIX}"
    for did in tracked(chosen, f"asking {generator.model} for questions", progress):
        text = dataset.corpus[did]
        start, end = rng.choice(scorer.window_spans(_PLANNING_QUERY, [text])[0])
        passage = text[start:end]
        question = generator.question(passage)
        if not question:
            empty += 1
            continue
        if question.lower() in seen:
            repeated += 1
            continue
        seen.add(question.lower())
        qid = f"{prefix}{len(queries) + 1}"
        queries[qid], sources[qid], passages[qid] = question, did, passage
    stats = {
        "model": f"ollama:{generator.model}",
        "passages_sampled": len(chosen),
        "empty": empty,
        "repeated": repeated,
        "generated": len(queries),
    }
    return GeneratedQueries(queries=queries, sources=sources, passages=passages, stats=stats)


def consistency_filter(
    generated: GeneratedQueries,
    dataset: Dataset,
    run: Run,
    scorer: Scorer,
    *,
    depth: int,
    top: int = CONSISTENCY_TOP,
) -> GeneratedQueries:
    """Keep the questions whose source document the base reranker ranks in its ``top`` among the candidates.

    The candidates are the first stage's ``depth`` best for the question, plus the source document.
    """
    kept: dict[str, str] = {}
    for qid, question in generated.queries.items():
        source = generated.sources[qid]
        ids = [source, *(d for d in ranked_ids(run.get(qid, {}))[:depth] if d != source)]
        raw = scorer.score(question, [dataset.corpus[d] for d in ids]).raw
        rank = 1 + sum(r > raw[0] for r in raw[1:])
        if rank <= top:
            kept[qid] = question
    stats = {
        **generated.stats,
        "consistency_top": top,
        "kept_by_consistency_filter": len(kept),
        "dropped_by_consistency_filter": len(generated.queries) - len(kept),
    }
    return GeneratedQueries(
        queries=kept,
        sources={q: generated.sources[q] for q in kept},
        passages={q: generated.passages[q] for q in kept},
        stats=stats,
    )
