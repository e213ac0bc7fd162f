"""LlamaIndex integration of ce-rerank: ``CrossEncoderRerank``, a node postprocessor.

Install with ``pip install "ce-rerank[llamaindex]"``.
"""

from __future__ import annotations

try:
    import llama_index.core  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError('llamaindex_ce_rerank needs llama-index-core: pip install "ce-rerank[llamaindex]"') from exc

from ._postprocessor import CrossEncoderRerank

__all__ = ["CrossEncoderRerank"]
