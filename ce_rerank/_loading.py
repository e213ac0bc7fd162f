"""The process-wide registries: one loaded model per configuration (lazy, thread-safe) and the score caches.

A model is loaded on torch through sentence-transformers, or, for ``backend="auto"``/``"openvino"``, from
the OpenVINO engine's disk cache (converting it on the first start).
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._sources import model_source
from .exceptions import ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

__all__ = ["clear_model_cache", "loaded_models"]

logger = logging.getLogger("ce_rerank")


@dataclass
class _LoadedModel:
    """A loaded cross-encoder and what every call needs to know about it."""

    model: CrossEncoder
    device: str
    dtype: str
    max_length: int
    num_labels: int
    lock: threading.Lock
    backend: str = "torch"

    @property
    def tokenizer(self) -> Any:
        """The tokenizer the planning calls (a transformers tokenizer here; ``tokenizers`` on OpenVINO)."""
        return self.model.tokenizer


_registry: dict[tuple[Any, ...], Any] = {}  # _LoadedModel, or _openvino.OpenVINOModel
_registry_lock = threading.Lock()
_key_locks: dict[tuple[Any, ...], threading.Lock] = {}


def loaded_models() -> int:
    """How many distinct models this process holds (one per configuration)."""
    with _registry_lock:
        return len(_registry)


def clear_model_cache() -> None:
    """Forget every loaded model and every cached score (the next call loads again)."""
    with _registry_lock:
        _registry.clear()
        _key_locks.clear()
        _score_caches.clear()


class _ScoreCache:
    """Least-recently-used (query, text) -> (raw score, best window span), for one configuration.

    Thread-safe. Sized in entries; each entry holds references to its query and text strings.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self.entries: OrderedDict[tuple[str, str], tuple[float, tuple[int, int] | None]] = OrderedDict()
        self.lock = threading.Lock()

    def get_many(self, query: str, texts: list[str]) -> dict[str, tuple[float, tuple[int, int] | None]]:
        found = {}
        with self.lock:
            for t in texts:
                hit = self.entries.get((query, t))
                if hit is not None:
                    self.entries.move_to_end((query, t))
                    found[t] = hit
        return found

    def put_many(self, query: str, items: dict[str, tuple[float, tuple[int, int] | None]]) -> None:
        with self.lock:
            for t, value in items.items():
                self.entries[(query, t)] = value
                self.entries.move_to_end((query, t))
            while len(self.entries) > self.size:
                self.entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self.entries)


# One score cache per (model configuration, windowing settings, size), shared by every scorer
# with those settings: the adapters build a scorer per call, and they must all hit the same cache.
_score_caches: dict[tuple[Any, ...], _ScoreCache] = {}


def _get_model(key: tuple[Any, ...]) -> Any:
    with _registry_lock:
        hit = _registry.get(key)
        if hit is not None:
            return hit
        key_lock = _key_locks.setdefault(key, threading.Lock())
    with key_lock:  # one loader per key; other keys load in parallel
        with _registry_lock:
            hit = _registry.get(key)
        if hit is None:
            hit = _load(*key)
            with _registry_lock:
                _registry[key] = hit
        return hit


def _load(
    model: str,
    device: str,
    dtype: str,
    quantize: str,
    backend: str,
    max_length: int | None,
    trust_remote_code: bool,
) -> Any:
    if backend in ("auto", "openvino"):
        engine = _load_openvino(model, dtype, quantize, max_length, trust_remote_code, fallback=backend == "auto")
        if engine is not None:
            return engine
        if backend == "openvino":
            raise ModelLoadError(
                model,
                "backend='openvino' converts BERT-family sequence classifiers "
                f"({', '.join(_openvino_supported())}); this model is another architecture",
                "use backend='torch' (or backend='auto', which picks torch for it)",
            )
        backend = "torch"  # auto: what OpenVINO does not convert runs on torch
    try:
        from sentence_transformers import CrossEncoder
    except ImportError as exc:  # pragma: no cover - a hard dependency
        raise ImportError("ce-rerank needs sentence-transformers: pip install ce-rerank") from exc

    logger.info("loading cross-encoder %s on %s (%s, quantize=%s, %s)", model, device, dtype, quantize, backend)
    try:
        with model_source(model) as source:  # a file, offline, an unreachable hub: fail fast; no progress bars
            ce = CrossEncoder(
                model,
                device=device,
                backend=backend,  # type: ignore[arg-type]
                trust_remote_code=trust_remote_code,
                max_length=max_length,
                **source,
            )
    except ModelLoadError:
        raise
    except Exception as exc:
        raise _load_error(model, exc, trust_remote_code=trust_remote_code, backend=backend) from exc

    config = getattr(ce.model, "config", None)
    architectures = list(getattr(config, "architectures", None) or [])
    if architectures and all(a.endswith("Model") for a in architectures):
        raise ModelLoadError(
            model,
            f"it is a bare encoder ({', '.join(architectures)}), e.g. an embedding model, with no trained "
            "relevance head: scores would come from randomly initialised weights",
            "use a cross-encoder (a *ForSequenceClassification model trained for reranking), "
            "e.g. cross-encoder/ms-marco-MiniLM-L-6-v2",
        )
    num_labels = int(ce.num_labels)
    if num_labels not in (1, 2):
        raise ModelLoadError(
            model,
            f"the model has {num_labels} outputs; a reranker has one (a relevance logit) or two "
            "(not relevant / relevant)",
            "use a cross-encoder trained for reranking",
        )
    tokenizer = ce.tokenizer
    if tokenizer is None:
        raise ModelLoadError(model, "the model has no text tokenizer", "use a text cross-encoder")
    effective = max_length or int(getattr(ce, "max_seq_length", None) or tokenizer.model_max_length)
    positions = int(getattr(config, "max_position_embeddings", 0) or 0)
    if effective > 100_000 and positions:  # tokenizer without a limit: the model's positions decide
        effective = positions
    if getattr(ce, "max_seq_length", None) != effective:
        ce.max_seq_length = effective
    ce.eval()
    if backend == "torch":
        from ._speed import first_token_last_layer, quantize_int8, store_linears_in

        first_token_last_layer(ce.model, tokenizer)
        if quantize == "int8":
            quantize_int8(ce.model)
        elif dtype != "float32":
            store_linears_in(ce.model, dtype)
    return _LoadedModel(
        model=ce, device=device, dtype=dtype, max_length=effective, num_labels=num_labels, lock=threading.Lock()
    )


def _openvino_supported() -> tuple[str, ...]:
    from ._openvino import SUPPORTED

    return SUPPORTED


def _load_openvino(
    model: str, dtype: str, quantize: str, max_length: int | None, trust_remote_code: bool, *, fallback: bool
) -> Any | None:
    """The OpenVINO engine (from its disk cache, converting on the first start), or None for another
    architecture (or, with ``fallback``, a failed conversion).

    The conversion loads the model through :func:`_load` on torch in float32, so it gets our exact rewrites.
    """
    from . import _openvino

    return _openvino.load(
        model,
        dtype=dtype,
        quantize=quantize,
        max_length=max_length,
        trust_remote_code=trust_remote_code,
        load_torch=lambda: _load(model, "cpu", "float32", "none", "torch", max_length, trust_remote_code),
        load_error=lambda exc: _load_error(model, exc, trust_remote_code=trust_remote_code),
        fallback=fallback,
    )


def _load_error(model: str, exc: BaseException, *, trust_remote_code: bool, backend: str = "torch") -> ModelLoadError:
    text = f"{type(exc).__name__}: {exc}"
    if backend != "torch" and "Optimum" in str(exc):
        return ModelLoadError(
            model,
            f"backend={backend!r} needs Hugging Face Optimum, which is not installed ({exc}). Note: optimum-onnx "
            "pins transformers < 4.58, so it cannot be installed beside sentence-transformers 6",
            "use backend='torch' (the default; bfloat16 autocast where the CPU has it, quantize='int8' on request)",
        )
    looks_local = model.startswith((".", "/", "~")) or os.sep in model.strip("/").split("/", 1)[-1]
    if "trust_remote_code" in text and not trust_remote_code:
        return ModelLoadError(
            model,
            "the model ships its own Python code, which ce-rerank does not run unless told to",
            "pass trust_remote_code=True if you have read and trust that code",
        )
    if os.path.isdir(os.path.expanduser(model)):
        return ModelLoadError(
            model,
            f"the directory exists but holds no loadable cross-encoder ({text})",
            "point model= at a directory written by CrossEncoder.save_pretrained or downloaded from the hub, "
            "with config.json, the weights and the tokenizer files",
        )
    if looks_local:
        return ModelLoadError(
            model,
            "no such directory",
            "check the path, or give a Hugging Face hub id such as 'cross-encoder/ms-marco-MiniLM-L-6-v2'",
        )
    return ModelLoadError(
        model,
        f"it is not a local directory and could not be fetched from the Hugging Face hub ({text})",
        "check the model id; if this machine cannot reach the hub, download the model where it can "
        "(CrossEncoder(id).save_pretrained(dir)), copy the directory here and pass model=<that directory>",
    )
