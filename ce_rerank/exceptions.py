"""Exceptions and warnings raised by ce-rerank.

The class tree::

    CeRerankError (Exception)
    ├── ModelLoadError        the cross-encoder could not be loaded
    └── ScorerError           a scorer failed or answered something unusable

    CeRerankWarning (UserWarning)
    ├── TruncationWarning     long_text="truncate" cut documents at the model window
    │   └── QueryTruncationWarning   a query was cut to the query budget (max_query_tokens)
    └── WindowCapWarning      a document needed more windows than max_windows allows
"""

from __future__ import annotations

__all__ = [
    "CeRerankError",
    "CeRerankWarning",
    "ModelLoadError",
    "QueryTruncationWarning",
    "ScorerError",
    "TruncationWarning",
    "WindowCapWarning",
]


class CeRerankError(Exception):
    """Base class of every error ce-rerank raises on purpose."""


class ModelLoadError(CeRerankError):
    """The cross-encoder named by ``model`` could not be loaded.

    The message names the model, the cause and the fix; the original exception is
    chained as ``__cause__``.
    """

    def __init__(self, model: str, cause: str, fix: str) -> None:
        self.model = model
        self.cause = cause
        self.fix = fix
        super().__init__(f"could not load cross-encoder {model!r}: {cause}. Fix: {fix}")


class ScorerError(CeRerankError):
    """A scorer failed, or returned something that cannot be mapped back to the input."""


class CeRerankWarning(UserWarning):
    """Base class of ce-rerank's warnings."""


class TruncationWarning(CeRerankWarning):
    """Documents longer than the model window were cut (``long_text="truncate"``)."""


class QueryTruncationWarning(TruncationWarning):
    """A query longer than the query budget (``max_query_tokens``) was cut to it."""


class WindowCapWarning(CeRerankWarning):
    """A document needed more windows than ``max_windows``; windows were spread over it."""
