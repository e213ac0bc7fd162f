"""LangChain integration of ce-rerank: ``CrossEncoderRerank``, a document compressor.

Install with ``pip install "ce-rerank[langchain]"``.
"""

from __future__ import annotations

try:
    import langchain_core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('langchain_ce_rerank needs langchain-core: pip install "ce-rerank[langchain]"') from exc

from ._compressor import CrossEncoderRerank, RerankRetriever

__all__ = ["CrossEncoderRerank", "RerankRetriever"]
