"""The local scorer: a sentence-transformers ``CrossEncoder`` in this process.

One loaded model per (model, device, dtype, quantize, backend, max_length, trust_remote_code) in a
process, shared by every scorer that asks for the same thing; loading is lazy and
thread-safe. Each call tokenises every distinct text once, splits texts longer than the
model window into overlapping windows (or truncates them, with a warning), orders all
(query, window) pairs by token length and scores them in token-budget batches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import sys
import threading
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from ._prompts import PairFrame, fit_query, measure, pair_frame
from ._scores import Scores
from ._sources import model_source
from .exceptions import ModelLoadError, QueryTruncationWarning, TruncationWarning, WindowCapWarning

if TYPE_CHECKING:
    import torch
    from sentence_transformers import CrossEncoder

__all__ = ["CrossEncoderScorer", "DEFAULT_MODEL", "clear_model_cache", "loaded_models", "native_bfloat16"]

logger = logging.getLogger("ce_rerank")

_SURROGATE = re.compile("[\ud800-\udfff]")

DEFAULT_MODEL = "cross-encoder/ms-marco-MiniLM-L-6-v2"
LongText = Literal["window", "truncate"]
Dtype = Literal["auto", "float32", "bfloat16", "float16"]
Quantize = Literal["auto", "none", "int8"]
Backend = Literal["auto", "torch", "onnx", "openvino"]


def resolve_device(device: str | None) -> str:
    """``None``/``"auto"``: cuda, then mps, then cpu. Anything else is passed through.

    A CPU-only torch build answers "cpu" without importing torch (read from its version file), so
    that a process serving a cached OpenVINO model never loads torch.
    """
    if device not in (None, "auto"):
        return str(device)
    if "torch" not in sys.modules and _cpu_only_torch():
        return "cpu"
    import torch

    if torch.cuda.is_available():
        return "cuda"
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return "mps"
    return "cpu"


def _cpu_only_torch() -> bool:
    """Whether the installed torch is a CPU-only build (no CUDA, no ROCm; not macOS, which may have MPS)."""
    import importlib.util

    if sys.platform == "darwin":
        return False
    spec = importlib.util.find_spec("torch")
    if spec is None or not spec.submodule_search_locations:
        return False
    try:
        text = open(os.path.join(next(iter(spec.submodule_search_locations)), "version.py"), encoding="utf-8").read()
    except OSError:
        return False
    found = dict(re.findall(r"^(cuda|hip)\b[^=]*=\s*(.+?)\s*$", text, flags=re.M))
    return found.get("cuda") == "None" and found.get("hip") == "None"


def resolve_backend(backend: str, device: str) -> str:
    """``auto``: OpenVINO when it is installed and the device is the CPU, torch otherwise.

    ``auto`` falls back to torch at load time for a model the OpenVINO engine does not convert
    (anything but a BERT-family sequence classifier). ``"openvino"`` without the extra installed
    raises an ImportError naming it.
    """
    if backend not in ("auto", "torch", "onnx", "openvino"):
        raise ValueError(f"backend must be 'auto', 'torch', 'onnx' or 'openvino', got {backend!r}")
    on_cpu = device.split(":", 1)[0] == "cpu"
    from . import _openvino

    if backend == "auto":
        return "auto" if on_cpu and _openvino.available() else "torch"
    if backend == "openvino":
        _openvino.require()
        if not on_cpu:
            raise ValueError(
                f"backend='openvino' runs on the CPU (device is {device!r}); use device='cpu' or backend='torch'"
            )
    return backend


def native_bfloat16() -> bool:
    """Whether this CPU computes bfloat16 matrix products natively (AVX512-BF16 or AMX).

    Asked of torch (which reads the CPU's feature flags), not of a list of known hosts.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(cpu, probe, None)
        try:
            if check is not None and check():
                return True
        except Exception:  # pragma: no cover - a torch build without the probe's backing code
            continue
    return False


def resolve_dtype(dtype: str, device: str, backend: str = "torch") -> str:
    """``auto``: the fastest precision that passed the fidelity gate (benchmarks/fidelity.py).

    float16 on CUDA; bfloat16 on a CPU with native bfloat16 (AVX512-BF16 or AMX): autocast on
    torch, where it ran 1.7-1.8x faster than float32 with NDCG@10 within 0.005 of it, bfloat16
    inference precision on OpenVINO (whose CPU plugin is asked about bfloat16, so torch is not
    imported); exact float32 everywhere else. ``"float32"`` forces exact scores (identical to
    ``CrossEncoder.predict``) on either engine.
    """
    if dtype not in ("auto", "float32", "bfloat16", "float16"):
        raise ValueError(f"dtype must be one of 'auto', 'float32', 'bfloat16', 'float16', got {dtype!r}")
    if dtype == "auto":
        if device.startswith("cuda"):
            return "float16"
        if device.split(":", 1)[0] == "cpu":
            if backend in ("auto", "openvino"):
                from ._openvino import native_bfloat16 as openvino_bfloat16

                if openvino_bfloat16():
                    return "bfloat16"
            elif native_bfloat16():
                return "bfloat16"
        return "float32"
    if dtype == "float16" and not device.startswith("cuda"):
        raise ValueError(f"dtype='float16' needs a CUDA device (device is {device!r}); use dtype='bfloat16' on CPU")
    return dtype


def resolve_quantize(quantize: str, dtype: str, device: str, backend: str) -> str:
    """``auto``: no quantisation. Neither int8 path passed the fidelity gate (benchmarks/README.md): torch
    dynamic int8 moved WikiQA NDCG@10 by -0.052 against float32, OpenVINO static int8 (NNCF) kept NDCG@10
    but not the order (median Kendall tau below 0.98), so neither is picked for you. ``"int8"`` asks for
    it where speed matters more: NNCF static int8 on the OpenVINO engine (``backend="auto"``/``"openvino"``),
    torch dynamic int8 with ``backend="torch"``; CPU, float32 outside the int8 products.
    """
    if quantize not in ("auto", "none", "int8"):
        raise ValueError(f"quantize must be one of 'auto', 'none', 'int8', got {quantize!r}")
    if quantize != "int8":
        return "none"
    if backend not in ("auto", "torch", "openvino") or device.split(":", 1)[0] != "cpu":
        raise ValueError(
            f"quantize='int8' runs on the CPU with the OpenVINO or torch engine (device is {device!r}, "
            f"backend {backend!r}); use device='cpu', backend='openvino' or 'torch', or quantize='none'"
        )
    if dtype not in ("auto", "float32"):
        raise ValueError(
            f"quantize='int8' quantises float32 activations; it does not combine with dtype={dtype!r}: "
            "leave dtype='auto' or set dtype='float32'"
        )
    return "int8"


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


@dataclass
class _Pair:
    doc: int
    span: tuple[int, int] | None  # character span of a window; None: the whole text
    length: int  # tokens, special tokens included


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

    def _plan(self, lm: _LoadedModel, query: str, texts: list[str]) -> tuple[list[_Pair], int, int, int]:
        """Tokenise each text once and turn it into (query, span) pairs with token lengths.

        Lengths count what the model sees: special tokens, chat template and prompt included. The
        query is cut to the query budget first (:meth:`_fit_query`); texts get the rest of the window.
        """
        tok = lm.tokenizer
        assert tok is not None  # checked at load
        frame = self._frame(lm)
        query = self._fit_query(lm, query)
        q_len = frame.overhead(_framing(lm), query)  # every token of a pair but the text's own
        specials = 0  # counted in q_len
        budget = max(lm.max_length - q_len - frame.slack, 1)
        enc = tok(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        window = min(self.window_tokens, budget)
        stride = min(self.window_stride or max(window // 2, 1), window)
        pairs: list[_Pair] = []
        cut: set[int] = set()  # pairs the tokenizer truncates (long_text="truncate")
        truncated = windowed = capped = 0
        for doc, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True)):
            n = len(ids)
            if n <= budget:
                pairs.append(_Pair(doc, None, q_len + n + specials))
                continue
            if self.long_text == "truncate":
                truncated += 1
                cut.add(len(pairs))
                pairs.append(_Pair(doc, None, lm.max_length))
                continue
            windowed += 1
            starts = list(range(0, n - window + 1, stride))
            if starts[-1] + window < n:
                starts.append(n - window)
            if len(starts) > self.max_windows:
                capped += 1
                last = n - window
                k = self.max_windows
                starts = sorted({round(j * last / (k - 1)) for j in range(k)}) if k > 1 else [0]
            for s in starts:
                span = (int(offsets[s][0]), int(offsets[s + window - 1][1]))
                pairs.append(_Pair(doc, span, q_len + window + specials))
        if frame.templated:
            self._measure(lm, frame, query, texts, pairs, cut, enc["offset_mapping"])
        if truncated:
            warnings.warn(
                f"{truncated} of {len(texts)} documents were longer than the model's {lm.max_length}-token "
                "window and were truncated (long_text='truncate'); use long_text='window' to score them whole",
                TruncationWarning,
                stacklevel=4,
            )
        if capped:
            warnings.warn(
                f"{capped} of {len(texts)} documents needed more than max_windows={self.max_windows} windows; "
                "their windows were spread evenly over the text, leaving gaps. Raise max_windows to cover them "
                "fully, or split such documents before reranking",
                WindowCapWarning,
                stacklevel=4,
            )
        return pairs, truncated, windowed, len(pairs)

    def _measure(
        self,
        lm: _LoadedModel,
        frame: PairFrame,
        query: str,
        texts: list[str],
        pairs: list[_Pair],
        cut: set[int],
        offsets: list[list[tuple[int, int]]],
    ) -> None:
        """Measure the pairs near the window as rendered; shorten any span that overflows.

        A chat template's words join a text's edge words, which can then tokenise differently than
        the text did alone (a few tokens either way). Pairs whose count (template, prompt and query
        exact, text counted alone) is within twice the slack of the window are rendered and counted
        exactly, and shortened if they overflow; the rest keep their count, off by those few edge
        tokens at most, which batching can afford, without tokenising every pair twice.
        """
        near = lm.max_length - 2 * frame.slack
        todo = [i for i in range(len(pairs)) if i not in cut and pairs[i].length > near]
        for _ in range(8):
            chunks = []
            for i in todo:
                p = pairs[i]
                chunks.append(texts[p.doc] if p.span is None else texts[p.doc][p.span[0] : p.span[1]])
            if not chunks:
                return
            lengths = measure(_framing(lm), frame.prompt, [(query, c) for c in chunks])
            over = []
            for i, n in zip(todo, lengths, strict=True):
                pairs[i].length = n
                if n > lm.max_length:
                    over.append(i)
            if not over:
                return
            for i in over:  # drop the excess tokens from the end of the span (whole texts become one span)
                p = pairs[i]
                start, end = p.span or (0, len(texts[p.doc]))
                ends = [int(b) for a, b in offsets[p.doc] if a >= start and b <= end]
                keep = max(len(ends) - (p.length - lm.max_length), 1)
                p.span = (start, ends[keep - 1])
            todo = over
        raise RuntimeError(  # pragma: no cover - the span shrinks every round
            "could not fit a text into the model window; please report this with the model id"
        )

    def _batches(self, pairs: list[_Pair]) -> Iterator[list[int]]:
        """Pair indices, longest first, in batches bounded by pairs and by padded tokens."""
        order = sorted(range(len(pairs)), key=lambda i: -pairs[i].length)
        batch: list[int] = []
        for i in order:
            longest = pairs[batch[0]].length if batch else pairs[i].length
            if batch and (len(batch) >= self.batch_size or (len(batch) + 1) * longest > self.max_batch_tokens):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    # -- scoring -----------------------------------------------------------------------

    def _autocast(self, lm: _LoadedModel) -> contextlib.AbstractContextManager[Any]:
        if lm.dtype == "float32":
            return contextlib.nullcontext()
        import torch

        device_type = lm.device.split(":", 1)[0]
        return torch.autocast(device_type=device_type, dtype=getattr(torch, lm.dtype))

    def _forward(self, lm: _LoadedModel, query: str, texts: list[str]) -> torch.Tensor:
        if lm.backend == "openvino":  # the same batch on OpenVINO; the prompt goes in front of the query, as on torch
            return lm.run((self._frame(lm).prompt or "") + query, texts)  # type: ignore[attr-defined, no-any-return]
        import torch
        from sentence_transformers.util import batch_to_device

        ce = lm.model
        features = ce.preprocess([(query, t) for t in texts], prompt=self._frame(lm).prompt)
        features = batch_to_device(features, torch.device(lm.device))
        with torch.inference_mode(), self._autocast(lm):
            logits = ce(features)["scores"]
        logits = logits.float().reshape(len(texts), -1)
        if lm.num_labels == 2:
            return (logits[:, 1] - logits[:, 0]).cpu()
        return logits[:, 0].cpu()

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
