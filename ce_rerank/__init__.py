"""ce-rerank: a cross-encoder reranker core, framework-free.

The LangChain adapter lives in ``langchain_ce_rerank``, the LlamaIndex one in
``llamaindex_ce_rerank``; both call :class:`Reranker`.

Example:
    >>> from ce_rerank import Reranker, CrossEncoderScorer
    >>> reranker = Reranker(CrossEncoderScorer("cross-encoder/ms-marco-MiniLM-L-6-v2"), top_n=2)  # doctest: +SKIP
    >>> [c.index for c in reranker.rerank("capital of France", ["Bananas.", "Paris is the capital."])]  # doctest: +SKIP
    [1, 0]
"""

from __future__ import annotations

from ._local import DEFAULT_MODEL, CrossEncoderScorer, clear_model_cache, loaded_models
from ._ranking import RankedCandidate, rank
from ._remote import RemoteScorer
from ._reranker import Reranker, RerankerSettings
from ._scores import Scorer, Scores
from .exceptions import (
    CeRerankError,
    CeRerankWarning,
    ModelLoadError,
    QueryTruncationWarning,
    ScorerError,
    TruncationWarning,
    WindowCapWarning,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "CeRerankError",
    "CeRerankWarning",
    "CrossEncoderScorer",
    "ModelLoadError",
    "QueryTruncationWarning",
    "RankedCandidate",
    "RemoteScorer",
    "Reranker",
    "RerankerSettings",
    "Scorer",
    "Scores",
    "ScorerError",
    "TruncationWarning",
    "WindowCapWarning",
    "__version__",
    "clear_model_cache",
    "loaded_models",
    "rank",
]
