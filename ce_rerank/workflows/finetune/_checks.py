"""``finetune``'s input checks: everything cheap is refused before the model loads and any work starts."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from ..._local import CrossEncoderScorer
from ..evaluation._first_stage import check_first_stage_spec
from ._objective import check_loss_for
from ._train import check_freeze


def check_output(path: str | os.PathLike[str]) -> Path:
    """The output folder, created if needed: it must be new or empty, and writable (checked by writing).

    Raises:
        ValueError: it is a file, it holds files already, or it cannot be written.
    """
    out = Path(path).expanduser()
    if out.exists() and not out.is_dir():
        raise ValueError(f"output {str(out)!r} is a file: give a folder for the model, report.json and the runs")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(
            f"output folder {str(out)!r} is not empty: give a new or empty folder (finetune never overwrites a model)"
        )
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot write to the output folder {str(out)!r} ({exc.strerror or type(exc).__name__}): give a folder "
            "you can write to"
        ) from exc
    return out


def check_first_stage(spec: str, *, generating: bool, titles: bool = False) -> None:
    """Reject an unknown first stage (or a run file with generated or title queries) before any work."""
    kind, _ = check_first_stage_spec(spec)
    if kind == "run" and (generating or titles):
        what, flag = ("generated queries", "--generate-queries") if generating else ("title queries", "--title-queries")
        raise ValueError(
            f"{what} need a first stage that retrieves for new questions: use --first-stage bm25 or "
            f"dense:MODEL with {flag} (a run file only holds the queries it was made for)"
        )


def parse_generator(spec: str) -> str:
    """The Ollama model name of ``ollama:MODEL``."""
    kind, _, model = spec.partition(":")
    if kind != "ollama" or not model.strip():
        raise ValueError(f"unknown query generator {spec!r}: use ollama:MODEL (e.g. ollama:llama3.2)")
    return model.strip()


def check_model(base: CrossEncoderScorer, layers: int, loss: str) -> None:
    """``freeze_layers`` must leave a layer to train and ``loss`` must fit the head: checked on the loaded
    base and its config, before any work."""
    check_loss_for(loss, base.load().num_labels, base.model_name)  # outputs as scoring reads them
    if layers:
        from transformers import AutoConfig

        from ..._sources import model_source

        with model_source(base.model_name) as source:
            count = AutoConfig.from_pretrained(base.model_name, **source).num_hidden_layers
        check_freeze(layers, count, base.model_name)


def check_positive(name: str, value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
