"""The rerank wire formats ``RemoteScorer`` speaks: request bodies and answers, no transport.

- ``api="rerank"`` (Cohere v2, Jina, vLLM, Infinity): ``{model, query, documents, top_n}`` ->
  ``{results: [{index, relevance_score}]}``, the score a probability.
- ``api="tei"`` (Hugging Face text-embeddings-inference): ``{query, texts, raw_scores: true}`` ->
  ``[{index, score}]``, the score a raw logit.
"""

from __future__ import annotations

import json
import math
from typing import Any, Literal

from ._http import utf8_safe
from ._scores import sigmoid

Api = Literal["rerank", "tei"]

# relevance_score is a probability; its logit is unbounded at 0 and 1. Probabilities are
# clamped to [_EPS, 1 - _EPS] first, so ce_raw_score lies within about +-27.6.
_EPS = 1e-12


class WireError(ValueError):
    """The server's answer does not follow the wire format (the message says how)."""


def logit(p: float) -> float:
    """Inverse sigmoid, with ``p`` clamped to ``[1e-12, 1 - 1e-12]``."""
    p = min(max(p, _EPS), 1.0 - _EPS)
    return math.log(p) - math.log1p(-p)


def request_body(api: Api, model: str | None, query: str, texts: list[str]) -> bytes:
    """The JSON body of one request, UTF-8 (lone surrogates, which UTF-8 cannot carry, become U+FFFD)."""
    if api == "tei":
        body: dict[str, Any] = {"query": query, "texts": texts, "raw_scores": True}
    else:
        body = {"query": query, "documents": texts, "top_n": len(texts)}
        if model is not None:
            body = {"model": model, **body}
    try:
        return json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        body["texts" if api == "tei" else "documents"] = [utf8_safe(t) for t in texts]
        body["query"] = utf8_safe(query)
        return json.dumps(body, ensure_ascii=False).encode("utf-8")


def parse_answer(api: Api, data: Any, n: int) -> tuple[list[float], list[float]]:
    """(relevance, raw) in the order the ``n`` documents were sent; :class:`WireError` for an unusable answer."""
    if api == "tei":
        items, key = data, "score"
        if not isinstance(items, list):
            raise WireError(f"expected a JSON list of {{index, score}} (TEI), got {type(items).__name__}")
    else:
        items, key = data.get("results") if isinstance(data, dict) else None, "relevance_score"
        if not isinstance(items, list):
            raise WireError("expected a JSON object with a 'results' list of {index, relevance_score}")
    if len(items) != n:
        raise WireError(f"sent {n} documents but got {len(items)} results")
    values: list[float | None] = [None] * n
    for item in items:
        index = item.get("index") if isinstance(item, dict) else None
        value = item.get(key) if isinstance(item, dict) else None
        if isinstance(index, bool) or not isinstance(index, int):
            raise WireError(f"a result has no integer 'index': {str(item)[:100]}")
        if not 0 <= index < n:
            raise WireError(f"result index {index} is out of range for {n} documents")
        if values[index] is not None:
            raise WireError(f"result index {index} appears twice")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise WireError(f"result {index} has no finite number in {key!r}: {value!r}")
        values[index] = float(value)
    scores = [v for v in values if v is not None]  # all set: n distinct in-range indices
    if api == "tei":
        return [sigmoid(s) for s in scores], scores
    out_of_range = [s for s in scores if not 0.0 <= s <= 1.0]
    if out_of_range:
        raise WireError(
            f"relevance_score {out_of_range[0]!r} is outside [0, 1]: this server returns raw logits, "
            "not probabilities; configure it to apply the sigmoid, or use api='tei' for a TEI server"
        )
    return scores, [logit(s) for s in scores]
