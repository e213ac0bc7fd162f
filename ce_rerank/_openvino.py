"""The OpenVINO engine: the torch cross-encoder, after our exact rewrites, converted once and cached.

A model is converted the first time it is asked for: loaded on torch in float32 (with the
first-token last layer of ``_speed.py``), exported with ``torch.export`` (dynamic batch and
sequence dimensions), converted by ``openvino.convert_model`` and, for ``quantize="int8"``,
quantised by NNCF (static int8, calibrated on the demo pairs shipped in ``ce_rerank/data``). The
result is written to a cache entry (a folder named by a hash of the model's files, our rewrites,
the settings and the OpenVINO version) with the model's own tokenizer and what the planning needs.
Every later start reads that entry with ``openvino`` and ``tokenizers`` only: neither torch nor
sentence-transformers is imported, so a process is ready in about a second.

Cache folder: ``$CE_RERANK_CACHE_DIR``, else ``$XDG_CACHE_HOME/ce-rerank``, else
``~/.cache/ce-rerank``. Entries are written to a temporary folder and renamed into place (two
processes converting at once both succeed; one rename wins), and an entry that cannot be read is
moved aside and rebuilt.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import sys
import threading
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .exceptions import ModelLoadError

logger = logging.getLogger("ce_rerank")

CACHE_ENV = "CE_RERANK_CACHE_DIR"
INSTALL = 'pip install "ce-rerank[openvino]"'
_FORMAT = 2  # layout of a cache entry; bump when what is written changes
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# BERT-family sequence classifiers: the architectures this engine converts (and tests).
SUPPORTED = (
    "BertForSequenceClassification",
    "RobertaForSequenceClassification",
    "XLMRobertaForSequenceClassification",
    "CamembertForSequenceClassification",
    "ElectraForSequenceClassification",
)


def available() -> bool:
    """Whether the ``openvino`` extra is installed (checked without importing it)."""
    return all(importlib.util.find_spec(m) is not None for m in ("openvino", "tokenizers"))


def require() -> None:
    """Raise an ImportError naming the extra when OpenVINO is not installed."""
    if not available():
        raise ImportError(f"backend='openvino' needs OpenVINO, which is not installed: {INSTALL}")


@functools.cache
def _core() -> Any:
    import openvino

    return openvino.Core()


@functools.cache
def native_bfloat16() -> bool:
    """Whether OpenVINO's CPU plugin computes bfloat16 natively here (AVX512-BF16 or AMX)."""
    try:
        return "BF16" in _core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # pragma: no cover - a CPU plugin that cannot be asked
        return False


def cache_root() -> Path:
    """Where converted models are kept (``$CE_RERANK_CACHE_DIR`` overrides)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ce-rerank"


# The files of a hub snapshot a cross-encoder needs (not the onnx/ or openvino/ folders some repos carry).
_HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "pytorch_model.bin"]


def model_directory(model: str) -> Path:
    """The local directory of ``model``: the path itself, or the hub snapshot (cached, else fetched).

    The one place the OpenVINO path turns a model name into files.
    """
    path = Path(model).expanduser()
    if path.is_dir():  # before anything is imported: a cached engine starts with openvino and tokenizers only
        return path.resolve()
    from ._sources import model_source

    with model_source(model) as source:  # a file, offline, an unreachable hub: fail fast, as on torch
        from huggingface_hub import snapshot_download

        try:
            return Path(snapshot_download(model, allow_patterns=_HUB_FILES, local_files_only=True))
        except Exception:
            if source.get("local_files_only"):
                raise
            return Path(snapshot_download(model, allow_patterns=_HUB_FILES))


def architectures(directory: Path) -> list[str]:
    """The architectures named in the model's config.json ([] when it has none)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [str(a) for a in config.get("architectures") or []]


def supported(directory: Path) -> bool:
    """Whether this engine converts the model: a BERT-family sequence classifier."""
    names = architectures(directory)
    return bool(names) and all(a in SUPPORTED for a in names)


# Our modules that shape the converted graph: the rewrites, the conversion, and the engine itself.
_GRAPH_SOURCES = ("_speed.py", "_convert.py", "_openvino.py")


def _rewrites_digest(here: Path = Path(__file__).parent) -> str:
    """A hash of :data:`_GRAPH_SOURCES`: any change to them makes new cache entries."""
    digest = hashlib.sha256()
    for name in _GRAPH_SOURCES:
        digest.update((here / name).read_bytes())
    return digest.hexdigest()


def entry_key(directory: Path, *, max_length: int | None, quantize: str, trust_remote_code: bool) -> str:
    """The cache entry's name: a hash of the model's files, our rewrites, the settings, OpenVINO's version.

    A model file counts by name, size, modification time and, for hub snapshots, the content hash
    its symlink points at (reading every weight on each start would cost more than the start).
    """
    from importlib.metadata import version

    parts: list[Any] = [_FORMAT, _rewrites_digest(), version("openvino"), max_length, quantize, trust_remote_code]
    for f in sorted(directory.iterdir()):
        if f.name.startswith(".") or f.suffix == ".md" or not f.is_file():
            continue
        st = f.stat()
        target = os.readlink(f) if f.is_symlink() else ""
        parts.append((f.name, st.st_size, st.st_mtime_ns, os.path.basename(target)))
    return hashlib.sha256(json.dumps(parts, default=str).encode()).hexdigest()[:32]


# -- the tokenizer, as the shared planning calls it --------------------------------------------


class PairTokenizer:
    """The model's own tokenizer (its backend ``tokenizers`` file), with the call surface the planning uses.

    ``__call__`` and ``num_special_tokens_to_add`` answer as a transformers fast tokenizer does
    (token ids and offsets without special tokens); :meth:`pairs` builds the padded, truncated
    batch exactly as the torch path's ``CrossEncoder.preprocess`` does.

    The planning tokenises every text of a call once; :meth:`pairs` reuses those encodings for the
    texts it is given whole (truncation and special tokens applied by ``post_process``, as
    ``encode`` itself does), so a text is not tokenised a second time to build its batch. Window
    slices and texts it has not seen are encoded afresh. Call under the model's lock.
    """

    def __init__(self, path: Path, meta: dict[str, Any]) -> None:
        from tokenizers import Tokenizer

        self.plain = Tokenizer.from_file(str(path))
        self.plain.no_truncation()
        self.plain.no_padding()
        self.batch = Tokenizer.from_file(str(path))  # truncates pairs; :meth:`pairs` pads each batch
        self.batch.enable_truncation(meta["max_length"], strategy="longest_first")
        self.batch.no_padding()
        self.padding = {
            "direction": meta["padding_side"],
            "pad_id": meta["pad_id"],
            "pad_type_id": meta["pad_type_id"],
            "pad_token": meta["pad_token"],
        }
        self.inputs: list[str] = list(meta["inputs"])
        self._seen: dict[str, Any] = {}  # text -> its encoding without special tokens (the last list call)

    def num_special_tokens_to_add(self, pair: bool = False) -> int:
        return int(self.plain.num_special_tokens_to_add(pair))

    def __call__(
        self,
        text: str | Sequence[str],
        *,
        add_special_tokens: bool = True,
        return_offsets_mapping: bool = False,
        verbose: bool = True,
    ) -> dict[str, Any]:
        if isinstance(text, str):
            enc = self.plain.encode(text, add_special_tokens=add_special_tokens)
            out: dict[str, Any] = {"input_ids": enc.ids}
            if return_offsets_mapping:
                out["offset_mapping"] = enc.offsets
            return out
        texts = list(text)
        encs = self.plain.encode_batch(texts, add_special_tokens=add_special_tokens)
        if not add_special_tokens:
            self._seen = dict(zip(texts, encs, strict=True))
        out = {"input_ids": [e.ids for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        return out

    def pairs(self, query: str, texts: Sequence[str]) -> dict[str, Any]:
        """int64 arrays for the model's inputs, padded to the longest pair of the batch."""
        import numpy as np

        encs: list[Any] = [None] * len(texts)
        fresh = []
        q = None
        for i, t in enumerate(texts):
            seen = self._seen.get(t)
            if seen is None:
                fresh.append(i)
                continue
            if q is None:
                q = self.plain.encode(query, add_special_tokens=False)
            encs[i] = self.batch.post_process(q, seen)  # truncation, then [CLS] q [SEP] t [SEP]: as encode does
        for i, e in zip(fresh, self.batch.encode_batch([(query, texts[i]) for i in fresh]), strict=True):
            encs[i] = e
        width = max(len(e.ids) for e in encs)
        for e in encs:  # fresh encodings (post_process returns new ones): the kept ones stay unpadded
            e.pad(width, **self.padding)
        fields = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}
        return {n: np.array([getattr(e, fields[n]) for e in encs], dtype=np.int64) for n in self.inputs}


# -- the engine ------------------------------------------------------------------------------


class OpenVINOModel:
    """A compiled OpenVINO cross-encoder and what every call needs to know about it.

    Has the fields of the torch path's loaded model that the scorer reads (``tokenizer``,
    ``max_length``, ``num_labels``, ``device``, ``dtype``, ``lock``) and runs one batch in :meth:`run`.
    """

    backend = "openvino"
    device = "cpu"

    def __init__(self, entry: Path, *, dtype: str, threads: int) -> None:
        meta = json.loads((entry / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format") != _FORMAT:
            raise ValueError(f"cache entry format {meta.get('format')!r}, expected {_FORMAT}")
        self.entry = entry
        self.meta = meta
        self.dtype = dtype
        self.max_length = int(meta["max_length"])
        self.num_labels = int(meta["num_labels"])
        self.first_token_layer = bool(meta["first_token_layer"])
        self.tokenizer = PairTokenizer(entry / "tokenizer.json", meta)
        # the model's saved prompts, read by the prompt resolution as on a CrossEncoder
        self.prompts: dict[str, str] = dict(meta.get("prompts") or {})
        self.default_prompt_name: str | None = meta.get("default_prompt_name")
        config: dict[str, Any] = {
            "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bfloat16" else "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "NUM_STREAMS": 1,
        }
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        core = _core()
        self.compiled = core.compile_model(core.read_model(str(entry / "model.xml")), "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.lock = threading.Lock()

    def run(self, query: str, texts: Sequence[str]) -> Any:
        """Raw scores (float32 numpy array): the logit, or the logit difference for two outputs."""
        feed = self.tokenizer.pairs(query, texts)
        logits = self.request.infer(feed)[0].reshape(len(texts), -1)
        if self.num_labels == 2:
            return logits[:, 1] - logits[:, 0]
        return logits[:, 0]


def threads() -> int:
    """The torch path's thread setting: torch's own when torch is loaded, else ``OMP_NUM_THREADS`` (0: default)."""
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "get_num_threads"):
        return int(torch.get_num_threads())
    try:
        return max(int(os.environ.get("OMP_NUM_THREADS", "0")), 0)
    except ValueError:
        return 0


def load(
    model: str,
    *,
    dtype: str,
    quantize: str,
    max_length: int | None,
    trust_remote_code: bool,
    load_torch: Callable[[], Any],
    load_error: Callable[[BaseException], ModelLoadError],
    fallback: bool = False,
) -> OpenVINOModel | None:
    """The compiled model from its cache entry, converting first when there is none (or it is unreadable).

    ``load_torch`` loads the float32 torch model with our rewrites (the torch path's own loader).
    Returns None when the model is not a BERT-family sequence classifier, and, with ``fallback``
    (``backend="auto"``), when the conversion fails (logged as a warning): the caller runs torch.

    Raises:
        ModelLoadError: the model cannot be found or loaded, the cache folder cannot be written, or
            (without ``fallback``) the conversion fails.
    """
    require()
    try:
        directory = model_directory(model)
    except ModelLoadError:
        raise
    except Exception as exc:
        raise load_error(exc) from exc
    if not supported(directory):
        return None
    root = cache_root()
    entry = root / entry_key(directory, max_length=max_length, quantize=quantize, trust_remote_code=trust_remote_code)
    if (entry / "meta.json").is_file():
        try:
            return OpenVINOModel(entry, dtype=dtype, threads=threads())
        except Exception as exc:  # a torn, truncated or foreign entry: move it aside and convert again
            logger.warning("the cached OpenVINO model %s cannot be read (%s); converting again", entry, exc)
            _discard(entry)
    from ._convert import convert

    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelLoadError(
            model,
            f"the OpenVINO cache folder {str(root)!r} cannot be created ({exc})",
            f"set {CACHE_ENV} to a writable folder, or use backend='torch'",
        ) from exc
    torch_model = load_torch()  # ModelLoadError for a model that cannot be loaded, as on torch
    logger.info("converting %s to OpenVINO (once; cached in %s)", model, root)
    tmp = root / f".tmp-{uuid.uuid4().hex}"
    try:
        convert(torch_model, tmp, quantize=quantize)
        try:
            os.rename(tmp, entry)
        except OSError:  # another process put the same entry in place first: theirs is as good
            if not (entry / "meta.json").is_file():
                raise
    except ImportError:
        raise
    except OSError as exc:
        raise ModelLoadError(
            model,
            f"the converted model cannot be written to {str(root)!r} ({exc})",
            f"set {CACHE_ENV} to a writable folder, or use backend='torch'",
        ) from exc
    except Exception as exc:
        if fallback:
            logger.warning("OpenVINO could not convert %s (%s: %s); scoring on torch", model, type(exc).__name__, exc)
            return None
        raise ModelLoadError(
            model, f"OpenVINO could not convert it ({type(exc).__name__}: {exc})", "use backend='torch'"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return OpenVINOModel(entry, dtype=dtype, threads=threads())


def _discard(entry: Path) -> None:
    aside = entry.with_name(f".bad-{uuid.uuid4().hex}")
    try:
        os.rename(entry, aside)
    except OSError:
        return  # already moved by another process
    shutil.rmtree(aside, ignore_errors=True)
