"""Where a model comes from, checked before anything is loaded: a local directory, the local
Hugging Face cache, or the hub.

Every engine's loader wraps its load in :func:`model_source`::

    with model_source(model) as load_kwargs:   # raises ModelLoadError for what cannot work
        ce = CrossEncoder(model, ..., **load_kwargs)

It refuses, in well under a second or within a few seconds at most:

- a file given as the model ("is a file, not a model directory");
- a hub id while ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) is set and the model is not in the
  local Hugging Face cache;
- a hub id while the hub cannot be reached and the model is not cached: one short probe of the
  hub's endpoint (:data:`PROBE_SECONDS`) replaces huggingface_hub's retries, which took 52-54 s
  and a dozen lines of noise before failing.

A model already in the local cache loads from it without the network (``local_files_only``),
whether the hub is unreachable or offline mode is on. While the model loads, transformers' and
huggingface_hub's progress bars are off (a library inside someone's app draws no bars); the
caller's own setting is restored afterwards.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .exceptions import ModelLoadError

__all__ = ["PROBE_SECONDS", "model_source", "quiet_progress_bars"]

#: How long the hub probe waits for any answer before the hub counts as unreachable.
PROBE_SECONDS = 3.0

_OFFLINE_FIX = (
    "if this machine has no network, set HF_HUB_OFFLINE=1 (no download attempts) and pass a local "
    "directory: model=<dir> (on a machine that reaches the hub, CrossEncoder(id).save_pretrained(dir), then "
    "copy the directory here), or run once where the hub is reachable so that the model is cached"
)


@contextmanager
def model_source(model: str) -> Iterator[dict[str, Any]]:
    """Check where ``model`` comes from, then load it (the ``with`` body) without progress bars.

    Yields:
        Extra keyword arguments for the loader: ``{"local_files_only": True}`` when the model
        must come from the local Hugging Face cache, else ``{}``.

    Raises:
        ModelLoadError: ``model`` is a file; or a hub id that cannot be fetched (offline mode,
            or an unreachable hub) and is not in the local cache.
    """
    kwargs = _check(model)
    with quiet_progress_bars():
        yield kwargs


def _check(model: str) -> dict[str, Any]:
    path = os.path.expanduser(model)
    if os.path.isfile(path):
        parent = os.path.dirname(os.path.abspath(path))
        hint = (
            f"pass the directory that holds it: {parent}"
            if os.path.isfile(os.path.join(parent, "config.json"))
            else "pass a model directory (config.json, the weights and the tokenizer files, as written by "
            "CrossEncoder.save_pretrained) or a Hugging Face hub id"
        )
        raise ModelLoadError(model, "it is a file, not a model directory", hint)
    if os.path.isdir(path) or not _is_hub_id(model):
        return {}  # a local directory, or a path that does not exist: the loader's error names it
    cached = _cached(model)
    if _offline():
        if not cached:
            raise ModelLoadError(
                model,
                "it is neither a local directory nor in the local Hugging Face cache "
                f"({_cache_dir()}), and HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids downloading it",
                "pass a local directory (model=<dir>), or unset HF_HUB_OFFLINE on a machine that reaches the hub "
                "so that the model is downloaded once",
            )
        return {"local_files_only": True}
    problem = _probe_hub()
    if problem is None:
        return {}
    if cached:
        return {"local_files_only": True}  # the hub is unreachable, the cache has it: no retries
    raise ModelLoadError(
        model, f"it is neither a local directory nor in the local Hugging Face cache, and {problem}", _OFFLINE_FIX
    )


def _is_hub_id(model: str) -> bool:
    try:
        from huggingface_hub.utils import validate_repo_id

        validate_repo_id(model)
    except Exception:
        return False
    return True


def _offline() -> bool:
    import huggingface_hub.constants as hub

    def truthy(name: str) -> bool:
        return os.environ.get(name, "").strip().upper() in ("1", "ON", "YES", "TRUE")

    return bool(hub.HF_HUB_OFFLINE) or truthy("HF_HUB_OFFLINE") or truthy("TRANSFORMERS_OFFLINE")


def _cache_dir() -> str:
    import huggingface_hub.constants as hub

    return str(hub.HF_HUB_CACHE)


def _cached(model: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    try:
        return isinstance(try_to_load_from_cache(model, "config.json"), str)
    except Exception:  # a cache the library cannot read counts as empty
        return False


def _probe_hub() -> str | None:
    """``None`` when the hub's endpoint answers at all within :data:`PROBE_SECONDS`, else why not.

    Uses huggingface_hub's own HTTP session (its proxies, certificates and headers), in a daemon
    thread, so that a slow name lookup cannot stretch the wait either.
    """
    import huggingface_hub.constants as hub

    endpoint = str(hub.ENDPOINT)
    failure: list[str] = []

    def probe() -> None:
        try:
            from huggingface_hub import get_session

            get_session().head(endpoint, timeout=PROBE_SECONDS)
        except Exception as exc:
            failure.append(f"{type(exc).__name__}: {exc}")
        else:
            failure.append("")

    start = time.monotonic()
    worker = threading.Thread(target=probe, name="ce-rerank-hub-probe", daemon=True)
    worker.start()
    worker.join(PROBE_SECONDS + 0.5)
    if failure and not failure[0]:
        return None
    why = failure[0] if failure else f"no answer within {time.monotonic() - start:.1f} s"
    return f"the Hugging Face hub ({endpoint}) cannot be reached ({why})"


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved: tuple[bool, bool] | None = None


@contextmanager
def quiet_progress_bars() -> Iterator[None]:
    """No transformers/huggingface_hub progress bars inside the block; the caller's setting after it.

    Nested and concurrent blocks are fine: the outermost one saves and restores.
    """
    global _quiet_depth, _saved
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved = _bars_off()
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0 and _saved is not None:
                _restore(*_saved)
                _saved = None


def _bars_off() -> tuple[bool, bool]:
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    state = (hf_logging.is_progress_bar_enabled(), are_progress_bars_disabled())
    hf_logging.disable_progress_bar()  # transformers' bars, and huggingface_hub's with them
    return state


def _restore(transformers_on: bool, hub_off: bool) -> None:
    from huggingface_hub.utils import disable_progress_bars, enable_progress_bars
    from transformers.utils import logging as hf_logging

    with warnings.catch_warnings():  # enabling warns when HF_HUB_DISABLE_PROGRESS_BARS=1 overrides it
        warnings.simplefilter("ignore")
        if transformers_on:
            hf_logging.enable_progress_bar()  # turns huggingface_hub's on too
        if hub_off:
            disable_progress_bars()
        elif not transformers_on:
            enable_progress_bars()
