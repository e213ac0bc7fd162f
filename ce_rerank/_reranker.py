"""The reranker: a scorer plus the ranking policy plus logging. Adapters call this."""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ._local import DEFAULT_MODEL, CrossEncoderScorer, check_inputs
from ._ranking import RankedCandidate, passthrough, rank, validate_policy
from ._scores import Scorer, Scores

__all__ = ["Reranker", "RerankerSettings"]

logger = logging.getLogger("ce_rerank")


def short_id(text: str) -> str:
    """A short, stable id for a text, for DEBUG logs (the text itself is never logged)."""
    return "t:" + hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:8]


class Reranker:
    """Scores candidates with a :class:`Scorer` and orders them by the ranking policy.

    Args:
        scorer: what scores (query, text) pairs; the local cross-encoder by default.
        top_n: keep at most this many (``None``: keep all).
        min_score: drop candidates whose ``relevance_score`` is below this.
        fusion: ``"rrf"`` to fuse the cross-encoder's order with the retriever's.
        rrf_k: the RRF constant (ranks from 1).
        rrf_weights: RRF weights (retriever, cross-encoder).
        on_error: ``"raise"`` (default): scoring failures propagate. ``"passthrough"``: a
            failing scorer (model load, server, bad answer) gives back every candidate in
            the retriever's order, each flagged with ``rerank_error``, and logs a WARNING.
            Bad input (an empty query) always raises.

    Example:
        >>> from ce_rerank import Reranker, Scores
        >>> class Fake:
        ...     name = "fake"
        ...     def score(self, query, texts):
        ...         return Scores.from_raw([float(len(t)) for t in texts])
        ...     async def ascore(self, query, texts):
        ...         return self.score(query, texts)
        >>> [c.index for c in Reranker(Fake(), top_n=2).rerank("q", ["a", "ccc", "bb"])]
        [1, 2]
    """

    def __init__(
        self,
        scorer: Scorer | None = None,
        *,
        top_n: int | None = 5,
        min_score: float | None = None,
        fusion: Literal["rrf"] | None = None,
        rrf_k: float = 60.0,
        rrf_weights: Sequence[float] = (1.0, 1.0),
        on_error: Literal["raise", "passthrough"] = "raise",
    ) -> None:
        validate_policy(top_n=top_n, min_score=min_score, fusion=fusion, rrf_k=rrf_k, rrf_weights=rrf_weights)
        if on_error not in ("raise", "passthrough"):
            raise ValueError(f"on_error must be 'raise' or 'passthrough', got {on_error!r}")
        self.on_error = on_error
        self.scorer: Scorer = scorer if scorer is not None else CrossEncoderScorer()
        self.top_n = top_n
        self.min_score = min_score
        self.fusion: Literal["rrf"] | None = fusion
        self.rrf_k = rrf_k
        self.rrf_weights = tuple(rrf_weights)

    def _rank(self, scores: Scores, n: int) -> list[RankedCandidate]:
        if len(scores) != n:
            from .exceptions import ScorerError

            raise ScorerError(f"scorer {self.scorer.name!r} returned {len(scores)} scores for {n} texts")
        return rank(
            scores,
            top_n=self.top_n,
            min_score=self.min_score,
            fusion=self.fusion,
            rrf_k=self.rrf_k,
            rrf_weights=self.rrf_weights,
        )

    def rerank(self, query: str, texts: Iterable[str], *, ids: Iterable[str] | None = None) -> list[RankedCandidate]:
        """Score and order ``texts`` for ``query``; return positions into ``texts`` with scores.

        ``texts`` may be any iterable (a generator is read once). An empty ``texts`` returns ``[]``
        without touching the scorer (no model load). ``ids`` only label the DEBUG log table.
        """
        texts = check_inputs(query, texts)
        labels = None if ids is None else list(ids)
        if not texts:
            return []
        start = time.perf_counter()
        try:
            scores = self.scorer.score(query, texts)
            ranked = self._rank(scores, len(texts))
        except Exception as exc:
            return self._failed(exc, len(texts))
        self._log(scores, ranked, texts, labels, time.perf_counter() - start)
        return ranked

    async def arerank(
        self, query: str, texts: Iterable[str], *, ids: Iterable[str] | None = None
    ) -> list[RankedCandidate]:
        """Async version of :meth:`rerank` (the scorer's ``ascore``)."""
        texts = check_inputs(query, texts)
        labels = None if ids is None else list(ids)
        if not texts:
            return []
        start = time.perf_counter()
        try:
            scores = await self.scorer.ascore(query, texts)
            ranked = self._rank(scores, len(texts))
        except Exception as exc:
            return self._failed(exc, len(texts))
        self._log(scores, ranked, texts, labels, time.perf_counter() - start)
        return ranked

    def _failed(self, exc: Exception, n: int) -> list[RankedCandidate]:
        if self.on_error == "raise":
            raise exc
        error = f"{type(exc).__name__}: {exc}"
        logger.warning(
            "reranking failed with %s, returning %d candidates in retriever order (on_error='passthrough'): %s",
            self.scorer.name,
            n,
            error,
        )
        return passthrough(n, error)

    def _log(
        self,
        scores: Scores,
        ranked: list[RankedCandidate],
        texts: list[str],
        ids: Sequence[str] | None,
        seconds: float,
    ) -> None:
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "reranked %d candidates with %s: %d pairs (%d windowed, %d truncated), %d batches, %.1f ms, kept %d",
                len(texts),
                self.scorer.name,
                scores.pairs,
                scores.windowed,
                scores.truncated,
                scores.batches,
                seconds * 1000.0,
                len(ranked),
            )
        if logger.isEnabledFor(logging.DEBUG):
            lines = [f"{'new':>4} {'was':>4} {'relevance':>9} {'raw':>9}  id"]
            for new_rank, c in enumerate(ranked, start=1):
                label = str(ids[c.index]) if ids is not None and ids[c.index] else short_id(texts[c.index])
                moved = c.retrieval_rank - new_rank
                arrow = f"  (up {moved})" if moved > 0 else (f"  (down {-moved})" if moved < 0 else "")
                cols = f"{c.relevance_score:>9.4f} {c.ce_raw_score:>9.4f}"
                lines.append(f"{new_rank:>4} {c.retrieval_rank:>4} {cols}  {label}{arrow}")
            logger.debug("rerank result:\n%s", "\n".join(lines))


class RerankerSettings(BaseModel):
    """The settings both adapters share, by the same names; builds the core :class:`Reranker`.

    Framework adapters inherit from this and from their framework's base class.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, protected_namespaces=())

    model: str = Field(
        default=DEFAULT_MODEL,
        description="Cross-encoder to score with: a Hugging Face hub id or a local directory.",
    )
    top_n: int | None = Field(default=5, description="Keep at most this many results (None keeps all).")
    min_score: float | None = Field(
        default=None, description="Drop results whose relevance_score (in [0, 1]) is below this."
    )
    batch_size: int = Field(default=32, description="Most (query, text) pairs per forward pass.")
    max_length: int | None = Field(
        default=None, description="Model window in tokens (query + text); None uses the model's own."
    )
    device: str | None = Field(default="auto", description="'auto' (cuda, then mps, then cpu) or a torch device.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = Field(
        default="auto",
        description="'auto': the fastest precision that keeps the ranking (float16 on CUDA, bfloat16 autocast "
        "on CPUs with native bfloat16, float32 elsewhere); 'float32' forces exact scores.",
    )
    quantize: Literal["auto", "none", "int8"] = Field(
        default="auto",
        description="'auto'/'none': no quantisation. 'int8': NNCF static int8 on OpenVINO, torch dynamic int8 with "
        "backend='torch' (CPU; faster, but neither passed the fidelity gate, so 'auto' never picks them).",
    )
    backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        default="auto",
        description="'auto': OpenVINO when the openvino extra is installed and the device is the CPU (BERT-family "
        "cross-encoders; others run on torch), torch otherwise. 'openvino': converted once, cached on disk "
        "($CE_RERANK_CACHE_DIR), served without torch. 'torch': sentence-transformers. 'onnx' needs Optimum.",
    )
    long_text: Literal["window", "truncate"] = Field(
        default="window",
        description="Texts longer than the model window: 'window' scores overlapping windows and keeps the "
        "best (ce_best_span says where); 'truncate' cuts them, with a warning.",
    )
    window_tokens: int = Field(
        default=128, description="Tokens of text per window for long texts (half-overlapping windows)."
    )
    max_windows: int = Field(default=64, description="Most windows per text; past it windows are spread out.")
    prompt: str | None = Field(
        default=None,
        description="Instruction for instruction-following (LLM) rerankers, passed as CrossEncoder.predict(prompt=...) "
        "passes it; '' turns off a model's default prompt. Not with prompt_name.",
    )
    prompt_name: str | None = Field(
        default=None,
        description="Name of one of the model's saved prompts (CrossEncoder.prompts); default: the model's "
        "default_prompt_name, if any.",
    )
    max_query_tokens: int | None = Field(
        default=None,
        description="Most tokens of the query (prompt and template not counted); a longer query is cut, with a "
        "QueryTruncationWarning, and texts get the rest of the window. None: half the window.",
    )
    fusion: Literal["rrf"] | None = Field(
        default=None, description="'rrf' fuses the cross-encoder's order with the retriever's (fusion_score)."
    )
    rrf_k: float = Field(default=60.0, description="Reciprocal Rank Fusion constant k (ranks count from 1).")
    rrf_weights: tuple[float, float] = Field(default=(1.0, 1.0), description="RRF weights: (retriever, cross-encoder).")
    trust_remote_code: bool = Field(default=False, description="Run code shipped with the model. Off by default.")
    cache_size: int = Field(
        default=0,
        description="Keep the scores of this many (query, text) pairs in a process-wide LRU cache, so repeated "
        "queries skip the model; 0 (default) turns it off.",
    )
    on_error: Literal["raise", "passthrough"] = Field(
        default="raise",
        description="'raise': scoring failures propagate. 'passthrough': return the retriever's order "
        "unchanged, each item flagged rerank_error, and log a WARNING.",
    )
    scorer: Any = Field(
        default=None,
        exclude=True,
        description="A ready Scorer (e.g. ce_rerank.RemoteScorer) to use instead of a local model.",
    )

    @model_validator(mode="after")
    def _check(self) -> RerankerSettings:
        validate_policy(
            top_n=self.top_n,
            min_score=self.min_score,
            fusion=self.fusion,
            rrf_k=self.rrf_k,
            rrf_weights=self.rrf_weights,
        )
        if self.scorer is not None:
            if not isinstance(self.scorer, Scorer):
                raise ValueError(
                    f"scorer must implement ce_rerank.Scorer (name, score, ascore), got {type(self.scorer).__name__}"
                )
        else:
            self._local_scorer()  # validates batch_size, max_length, ... without loading the model
        return self

    def _local_scorer(self) -> CrossEncoderScorer:
        return CrossEncoderScorer(
            self.model,
            device=self.device,
            dtype=self.dtype,
            quantize=self.quantize,
            backend=self.backend,
            batch_size=self.batch_size,
            max_length=self.max_length,
            long_text=self.long_text,
            window_tokens=self.window_tokens,
            max_windows=self.max_windows,
            trust_remote_code=self.trust_remote_code,
            cache_size=self.cache_size,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
            max_query_tokens=self.max_query_tokens,
        )

    @property
    def scorer_name(self) -> str:
        """The model id (or the remote scorer's name) for events and logs."""
        return str(self.scorer.name) if self.scorer is not None else self.model

    def reranker(self) -> Reranker:
        """The core reranker for the current settings (the model itself is cached process-wide)."""
        return Reranker(
            self.scorer if self.scorer is not None else self._local_scorer(),
            top_n=self.top_n,
            min_score=self.min_score,
            fusion=self.fusion,
            rrf_k=self.rrf_k,
            rrf_weights=self.rrf_weights,
            on_error=self.on_error,
        )
