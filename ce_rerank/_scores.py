"""The result type every scorer returns, and the protocol a scorer implements."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


def sigmoid(x: float) -> float:
    """Numerically stable logistic function."""
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    z = math.exp(x)
    return z / (1.0 + z)


@dataclass(frozen=True)
class Scores:
    """Scores for the texts of one call, in input order.

    Attributes:
        relevance: calibrated relevance in [0, 1] (``relevance_score``).
        raw: the model's raw output (``ce_raw_score``): a logit, or the logit
            difference of a two-output model. Sorting uses this (it never saturates).
        spans: for a text scored in windows, the character span ``(start, end)`` of the
            best window (``ce_best_span``); ``None`` for a text scored whole.
        pairs: (query, window) pairs sent through the model.
        batches: forward passes run.
        truncated: texts cut at the model window (``long_text="truncate"``).
        windowed: texts split into windows.
    """

    relevance: list[float]
    raw: list[float]
    spans: list[tuple[int, int] | None] = field(default_factory=list)
    pairs: int = 0
    batches: int = 0
    truncated: int = 0
    windowed: int = 0

    def __post_init__(self) -> None:
        if len(self.relevance) != len(self.raw):
            raise ValueError("relevance and raw must have one entry per text")
        if not self.spans:
            object.__setattr__(self, "spans", [None] * len(self.raw))
        elif len(self.spans) != len(self.raw):
            raise ValueError("spans must have one entry per text")

    def __len__(self) -> int:
        return len(self.raw)

    @classmethod
    def from_raw(cls, raw: Sequence[float], **kwargs: object) -> Scores:
        """Build scores from raw logits; relevance is their sigmoid."""
        raw_list = [float(r) for r in raw]
        return cls(relevance=[sigmoid(r) for r in raw_list], raw=raw_list, **kwargs)  # type: ignore[arg-type]


@runtime_checkable
class Scorer(Protocol):
    """Anything that scores (query, text) pairs: the local cross-encoder, a remote server, a fake.

    ``score`` must return one entry per input text, in input order.
    """

    @property
    def name(self) -> str:
        """A name for logs and events (the model id, or the endpoint)."""
        ...

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        """Score every text against the query."""
        ...

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        """Async version of :meth:`score`."""
        ...
