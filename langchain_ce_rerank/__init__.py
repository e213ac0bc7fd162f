"""LangChain integration of ce-rerank: ``CrossEncoderRerank``, a document compressor, and
``HuggingFaceCrossEncoder``, a ``BaseCrossEncoder`` for langchain-classic's ``CrossEncoderReranker``.

Install with ``pip install "ce-rerank[langchain]"``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('langchain_ce_rerank needs langchain-core: pip install "ce-rerank[langchain]"') from exc

from ._compressor import CrossEncoderRerank, RerankRetriever
from ._cross_encoder import HuggingFaceCrossEncoder

__all__ = ["CrossEncoderRerank", "HuggingFaceCrossEncoder", "RerankRetriever"]
