"""The local scorer: a cross-encoder in this process, on torch (sentence-transformers) or OpenVINO.

Each call tokenises every distinct text once, splits texts longer than the model window into
overlapping windows (or truncates them, with a warning), orders all (query, window) pairs by token
length and scores them in token-budget batches; the engines differ only in how a batch is run.
The pairs are planned in ``_windows``; loaded models are shared process-wide (``_loading``); the
``auto`` rules live in ``_resolve``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import warnings
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._batching import plan_batches
from ._loading import (
    _get_model,
    _LoadedModel,
    _registry_lock,
    _score_caches,
    _ScoreCache,
    clear_model_cache,
    loaded_models,
)
from ._prompts import PairFrame, fit_query, pair_frame
from ._resolve import native_bfloat16, resolve_backend, resolve_device, resolve_dtype, resolve_quantize
from ._scores import Scores
from ._windows import Pair, plan_pairs
from .exceptions import QueryTruncationWarning, TruncationWarning, WindowCapWarning

if TYPE_CHECKING:
    import torch

__all__ = ["CrossEncoderScorer", "DEFAULT_MODEL", "clear_model_cache", "loaded_models", "native_bfloat16"]

logger = logging.getLogger("ce_rerank")

_SURROGATE = re.compile("[\ud800-\udfff]")

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
LongText = Literal["window", "truncate"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Quantize = Literal["auto", "none", "int8"]
Backend = Literal["auto", "torch", "onnx", "openvino"]


class CrossEncoderScorer:
    """Scores (query, text) pairs with a local sentence-transformers ``CrossEncoder``.

    Args:
        model: a Hugging Face hub id or a local directory.
        device: ``"auto"``/``None`` (cuda, then mps, then cpu) or a torch device string.
        dtype: ``"auto"`` (default): the fastest precision that keeps the ranking, checked by
            ``benchmarks/fidelity.py`` (NDCG@10 within 0.005 of float32): float16 on CUDA,
            bfloat16 autocast on CPUs with native bfloat16 (AVX512-BF16 or AMX), float32
            elsewhere. ``"float32"`` forces exact scores, identical to ``CrossEncoder.predict``;
            ``"bfloat16"`` or ``"float16"`` run under autocast.
        batch_size: most pairs per forward pass.
        max_batch_tokens: most padded tokens per forward pass; long pairs get smaller batches.
        max_length: the model window in tokens (query, text and special tokens); default: the model's.
        long_text: ``"window"`` (default): a text longer than the window is split into
            overlapping windows, each is scored and the best counts (MaxP); ``"truncate"``:
            it is cut at the window, with one warning per call counting the cut texts.
        window_tokens: tokens of text per window (passage-sized; capped by the model window).
        window_stride: tokens between window starts; default half a window.
        max_windows: most windows per text; past it the windows are spread evenly over the
            whole text (gaps between them) and a ``WindowCapWarning`` is issued.
        quantize: ``"auto"`` (default) and ``"none"``: no quantisation. ``"int8"``: on OpenVINO,
            NNCF static int8 calibrated on the demo pairs shipped with the package; on torch
            (``backend="torch"``), dynamic int8 of every linear layer (2.0-2.5x faster than float32
            here, but WikiQA NDCG@10 -0.052). Neither passed the fidelity gate, so ``auto`` never
            picks int8; use it only where speed matters more than ranking quality.
        backend: the engine. ``"auto"`` (default): OpenVINO when the ``openvino`` extra is installed and
            the device is the CPU (for BERT-family sequence classifiers; any other model runs on torch),
            torch otherwise (CUDA keeps torch float16). ``"openvino"``: the torch model after our exact
            rewrites, converted once by OpenVINO and cached on disk (``$CE_RERANK_CACHE_DIR``, default
            ``~/.cache/ce-rerank``); later starts import neither torch nor sentence-transformers.
            Same pairs, windows and batches as torch; float32 gives torch's float32 logits.
            ``"torch"``: sentence-transformers on torch. ``"onnx"``: sentence-transformers' ONNX
            backend (needs Hugging Face Optimum).
        trust_remote_code: run code shipped with the model; off unless you ask.
        prompt: the instruction for instruction-following rerankers, passed as
            ``CrossEncoder.predict(prompt=...)`` passes it: a chat-template (LLM) reranker gets it as
            its system message, any other model in front of the query. ``""`` turns off a model's
            default prompt. Mutually exclusive with ``prompt_name``.
        prompt_name: the name of one of the model's saved prompts (``CrossEncoder.prompts``);
            default: the model's ``default_prompt_name``, if it has one.
        max_query_tokens: most tokens of the query itself (prompt and template not counted); a
            longer query is cut to its first ``max_query_tokens`` tokens, with a
            ``QueryTruncationWarning``, and texts get the rest of the window. Default: half of
            the window that special tokens, template and prompt leave (the split the window
            planning always used; a query is rarely that long, and a text still gets half).
        cache_size: keep the scores of this many (query, text) pairs in a least-recently-used
            cache shared by every scorer with the same model and settings, so a repeated query
            (retries, pagination, several retrievers returning the same passages) skips the
            model. 0 (default) turns it off.

    Example:
        >>> scorer = CrossEncoderScorer("cross-encoder/ms-marco-MiniLM-L-6-v2")  # doctest: +SKIP
        >>> scorer.score("capital of France", ["Paris is the capital.", "Bananas."]).relevance  # doctest: +SKIP
        [0.99, 0.0001]
    """

    def __init__(
        self,
        model: str = DEFAULT_MODEL,
        *,
        device: str | None = "auto",
        dtype: Dtype = "auto",
        batch_size: int = 32,
        max_batch_tokens: int = 2048,
        max_length: int | None = None,
        long_text: LongText = "window",
        window_tokens: int = 128,
        window_stride: int | None = None,
        max_windows: int = 64,
        quantize: Quantize = "auto",
        backend: Backend = "auto",
        trust_remote_code: bool = False,
        cache_size: int = 0,
        prompt: str | None = None,
        prompt_name: str | None = None,
        max_query_tokens: int | None = None,
    ) -> None:
        if not isinstance(model, str) or not model.strip():
            raise ValueError("model must be a hub id or a local directory, got an empty value")
        for name, value, low in (
            ("batch_size", batch_size, 1),
            ("max_batch_tokens", max_batch_tokens, 1),
            ("window_tokens", window_tokens, 8),
            ("max_windows", max_windows, 1),
            ("cache_size", cache_size, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if max_length is not None and (not isinstance(max_length, int) or max_length < 16):
            raise ValueError(f"max_length must be an integer >= 16 or None (the model's own), got {max_length!r}")
        if window_stride is not None and not (1 <= window_stride):
            raise ValueError(f"window_stride must be >= 1 or None (half a window), got {window_stride!r}")
        if max_query_tokens is not None and (
            isinstance(max_query_tokens, bool) or not isinstance(max_query_tokens, int) or max_query_tokens < 1
        ):
            raise ValueError(
                f"max_query_tokens must be an integer >= 1 or None (half the window), got {max_query_tokens!r}"
            )
        for label, given in (("prompt", prompt), ("prompt_name", prompt_name)):
            if given is not None and not isinstance(given, str):
                raise TypeError(f"{label} must be a string or None, got {type(given).__name__}")
        if prompt is not None and prompt_name is not None:
            raise ValueError(
                f"pass prompt (your own instruction) or prompt_name (one of the model's saved prompts), not both; "
                f"got prompt={prompt!r} and prompt_name={prompt_name!r}"
            )
        if long_text not in ("window", "truncate"):
            raise ValueError(f"long_text must be 'window' or 'truncate', got {long_text!r}")
        self.model_name = model
        self.device = resolve_device(device)
        backend = resolve_backend(backend, self.device)  # type: ignore[assignment]
        self.quantize = resolve_quantize(quantize, dtype, self.device, backend)
        self.dtype = "float32" if self.quantize == "int8" else resolve_dtype(dtype, self.device, backend)
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.max_length = max_length
        self.long_text = long_text
        self.window_tokens = window_tokens
        self.window_stride = window_stride
        self.max_windows = max_windows
        self.backend = backend
        self.trust_remote_code = bool(trust_remote_code)
        self.cache_size = cache_size
        self.prompt = prompt
        self.prompt_name = prompt_name
        self.max_query_tokens = max_query_tokens
        self._frame_for: tuple[_LoadedModel, PairFrame] | None = None

    def __repr__(self) -> str:
        return (
            f"CrossEncoderScorer(model={self.model_name!r}, device={self.device!r}, dtype={self.dtype!r}, "
            f"quantize={self.quantize!r}, backend={self.backend!r}, "
            f"long_text={self.long_text!r})"
        )

    @property
    def name(self) -> str:
        return self.model_name

    def _key(self) -> tuple[Any, ...]:
        return (
            self.model_name,
            self.device,
            self.dtype,
            self.quantize,
            self.backend,
            self.max_length,
            self.trust_remote_code,
        )

    def _cache(self) -> _ScoreCache | None:
        if not self.cache_size:
            return None
        key = (*self._key(), self.long_text, self.window_tokens, self.window_stride, self.max_windows, self.cache_size)
        key = (*key, self.prompt, self.prompt_name, self.max_query_tokens)
        with _registry_lock:
            cache = _score_caches.get(key)
            if cache is None:
                cache = _score_caches[key] = _ScoreCache(self.cache_size)
            return cache

    def load(self) -> _LoadedModel:
        """Load (or fetch from the process-wide cache) the model; called lazily by :meth:`score`.

        Also resolves the prompt and the query budget against the model, so that a bad
        ``prompt_name`` or ``max_query_tokens`` fails here, before any scoring.
        """
        lm = _get_model(self._key())
        with lm.lock:
            self._frame(lm)
        return lm

    def _frame(self, lm: _LoadedModel) -> PairFrame:
        """The prompt and token frame of a pair for this scorer's settings (hold ``lm.lock``)."""
        known = self._frame_for
        if known is not None and known[0] is lm:
            return known[1]
        frame = pair_frame(
            _framing(lm),
            max_length=lm.max_length,
            prompt=self.prompt,
            prompt_name=self.prompt_name,
            max_query_tokens=self.max_query_tokens,
        )
        self._frame_for = (lm, frame)
        return frame

    def _fit_query(self, lm: _LoadedModel, query: str, *, warn: bool = False) -> str:
        """The query cut to the query budget (hold ``lm.lock``); with ``warn``, say so when it was cut."""
        frame = self._frame(lm)
        fitted, total = fit_query(lm.tokenizer, query, frame.query_budget)
        if warn and fitted != query:
            which = (
                f"max_query_tokens={self.max_query_tokens}"
                if self.max_query_tokens is not None
                else f"the default query budget of {frame.query_budget} tokens (half the model's window)"
            )
            warnings.warn(
                f"the query has {total} tokens, more than {which}: it was cut to its first "
                f"{frame.query_budget} tokens and texts were scored against that; raise max_query_tokens "
                "to keep more of it",
                QueryTruncationWarning,
                stacklevel=4,
            )
        return fitted

    # -- planning ----------------------------------------------------------------------

    def _plan(self, lm: _LoadedModel, query: str, texts: list[str]) -> tuple[list[Pair], int, int, int]:
        """The call's (query, span) pairs with token lengths (``_windows``), warning about cut or capped texts.

        The query is cut to the query budget first (:meth:`_fit_query`); texts get the rest of the window.
        """
        assert lm.tokenizer is not None  # checked at load
        query = self._fit_query(lm, query)
        plan = plan_pairs(
            lm.tokenizer,
            _framing(lm),
            self._frame(lm),
            query,
            texts,
            max_length=lm.max_length,
            long_text=self.long_text,
            window_tokens=self.window_tokens,
            window_stride=self.window_stride,
            max_windows=self.max_windows,
        )
        if plan.truncated:
            warnings.warn(
                f"{plan.truncated} of {len(texts)} documents were longer than the model's {lm.max_length}-token "
                "window and were truncated (long_text='truncate'); use long_text='window' to score them whole",
                TruncationWarning,
                stacklevel=4,
            )
        if plan.capped:
            warnings.warn(
                f"{plan.capped} of {len(texts)} documents needed more than max_windows={self.max_windows} windows; "
                "their windows were spread evenly over the text, leaving gaps. Raise max_windows to cover them "
                "fully, or split such documents before reranking",
                WindowCapWarning,
                stacklevel=4,
            )
        return plan.pairs, plan.truncated, plan.windowed, len(plan.pairs)

    def _batches(self, pairs: list[Pair]) -> Iterator[list[int]]:
        """Pair indices, longest first, in batches bounded by pairs and by padded tokens (see ``_batching``)."""
        return plan_batches(
            [p.length for p in pairs], batch_size=self.batch_size, max_batch_tokens=self.max_batch_tokens
        )

    # -- scoring -----------------------------------------------------------------------

    def _forward(self, lm: _LoadedModel, query: str, texts: list[str]) -> torch.Tensor:
        if lm.backend == "openvino":  # the same batch on OpenVINO; the prompt goes in front of the query, as on torch
            return lm.run((self._frame(lm).prompt or "") + query, texts)  # type: ignore[attr-defined, no-any-return]
        ce = lm.model
        return torch_raw_scores(ce, ce.preprocess([(query, t) for t in texts], prompt=self._frame(lm).prompt), lm.dtype)

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        """Score every text against the query; one entry per text, in input order.

        Raises:
            ValueError: the query is empty, or a text is not a string.
            ModelLoadError: the model cannot be loaded.
        """
        # Lone surrogates cannot be tokenised (or encoded as UTF-8): score U+FFFD in their place.
        # One character for one, so character spans (ce_best_span) still index the caller's text.
        texts = [_SURROGATE.sub("\ufffd", t) for t in check_inputs(query, texts)]
        query = _SURROGATE.sub("\ufffd", query)
        if not texts:
            return Scores(relevance=[], raw=[])
        unique = list(dict.fromkeys(texts))  # identical texts are scored once
        cache = self._cache()
        known = cache.get_many(query, unique) if cache is not None else {}
        todo = [t for t in unique if t not in known]
        n_pairs = n_batches = truncated = windowed = 0
        if todo:
            lm = self.load()
            # One call at a time per model: a fast tokenizer's padding/truncation state is shared and
            # set per call (not thread-safe), and parallel forward passes would only contend for cores.
            with lm.lock:
                query_seen = self._fit_query(lm, query, warn=True)  # cut to the query budget
                pairs, truncated, windowed, n_pairs = self._plan(lm, query_seen, todo)
                raw = [0.0] * len(pairs)
                for batch in self._batches(pairs):
                    chunk = []
                    for i in batch:
                        p = pairs[i]
                        text = todo[p.doc]
                        chunk.append(text if p.span is None else text[p.span[0] : p.span[1]])
                    out = self._forward(lm, query_seen, chunk)
                    for i, v in zip(batch, out.tolist(), strict=True):
                        raw[i] = v
                    n_batches += 1
            best: dict[str, tuple[float, tuple[int, int] | None]] = {}
            for p, r in zip(pairs, raw, strict=True):
                t = todo[p.doc]
                if t not in best or r > best[t][0]:
                    best[t] = (r, p.span)
            if cache is not None:
                cache.put_many(query, best)
            known.update(best)
        best_raw = [known[t][0] for t in unique]
        rel = _sigmoid32(best_raw)
        where = {t: i for i, t in enumerate(unique)}
        idx = [where[t] for t in texts]
        return Scores(
            relevance=[rel[i] for i in idx],
            raw=[best_raw[i] for i in idx],
            spans=[known[texts[j]][1] for j in range(len(texts))],
            pairs=n_pairs,
            batches=n_batches,
            truncated=truncated,
            windowed=windowed,
        )

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        """Score in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.score, query, texts)

    # -- windows, for training on the units that are scored -------------------------------

    def scored_query(self, query: str) -> str:
        """The query as :meth:`score` sends it through the model: cut to the query budget (without the warning)."""
        lm = self.load()
        with lm.lock:
            return self._fit_query(lm, _SURROGATE.sub("\ufffd", query))

    def scored_prompt(self) -> str | None:
        """The instruction :meth:`score` sends with every pair: ``prompt``, else the saved prompt that
        ``prompt_name`` (or the model's ``default_prompt_name``) names, else None."""
        lm = self.load()
        with lm.lock:
            return self._frame(lm).prompt

    def window_spans(self, query: str, texts: Sequence[str]) -> list[list[tuple[int, int]]]:
        """The character spans :meth:`score` would send through the model for each text.

        One ``(0, len(text))`` span for a text that fits the window (or is truncated with
        ``long_text="truncate"``), else the spans of its overlapping windows, in text order:
        the same plan as scoring, so that fine-tuning sees the units inference scores.
        """
        texts = [_SURROGATE.sub("\ufffd", t) for t in check_inputs(query, texts)]
        lm = self.load()
        with lm.lock:
            pairs, *_ = self._plan(lm, _SURROGATE.sub("\ufffd", query), texts)
        spans: list[list[tuple[int, int]]] = [[] for _ in texts]
        for p in pairs:
            spans[p.doc].append(p.span if p.span is not None else (0, len(texts[p.doc])))
        return spans


def torch_raw_scores(ce: Any, features: dict[str, Any], dtype: str) -> torch.Tensor:
    """Raw scores of one preprocessed batch on a torch ``CrossEncoder``: the logit, or the logit difference
    for two outputs (float32, on the CPU). ``dtype`` other than ``"float32"`` runs under autocast to it.

    The caller puts the model in eval mode; fine-tuning's dev evaluation calls this too, so that both
    read scores the same way.
    """
    import torch
    from sentence_transformers.util import batch_to_device

    device = torch.device(ce.device)
    cast = contextlib.nullcontext() if dtype == "float32" else torch.autocast(device.type, dtype=getattr(torch, dtype))
    with torch.inference_mode(), cast:
        logits = ce(batch_to_device(features, device))["scores"]
    n = len(features["input_ids"])
    logits = logits.float().reshape(n, -1)
    if logits.shape[1] == 2:
        return (logits[:, 1] - logits[:, 0]).cpu()
    return logits[:, 0].cpu()


def _sigmoid32(raw: list[float]) -> list[float]:
    """The logistic function in float32, as CrossEncoder.predict's Sigmoid computes relevance (numpy: no torch)."""
    import numpy as np

    x = np.asarray(raw, dtype=np.float32)
    with np.errstate(over="ignore"):
        return (np.float32(1.0) / (np.float32(1.0) + np.exp(-x))).astype(np.float32).tolist()  # type: ignore[no-any-return]


def _framing(lm: Any) -> Any:
    """What the prompt and budget code reads a model's prompts and tokenizer from (``_prompts``):
    the ``CrossEncoder`` on torch, the engine itself on OpenVINO (it keeps the saved prompts)."""
    return lm if getattr(lm, "backend", "torch") == "openvino" else lm.model


def check_inputs(query: str, texts: Iterable[str]) -> list[str]:
    """Validate a call's inputs; return the texts as a list (any iterable, read once)."""
    if not isinstance(query, str):
        raise TypeError(f"query must be a string, got {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty: pass the user's question or search string to rerank against")
    if isinstance(texts, str) or not isinstance(texts, Iterable):
        what = "a single string: wrap it in a list" if isinstance(texts, str) else type(texts).__name__
        raise TypeError(f"texts must be an iterable of strings (a list, a tuple, a generator), got {what}")
    out = list(texts)
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise TypeError(f"texts[{i}] must be a string, got {type(t).__name__}")
    return out
