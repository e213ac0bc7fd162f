"""Training with sentence-transformers' ``CrossEncoderTrainer``: seeded, bf16 where the CPU has it, budgeted.

- ``max_minutes``: a callback ends training after the step that crosses the budget, and the
  model as it is then is saved. The learning rate warms up over the first 10% and decays
  linearly to 0 over the run's progress, measured in steps or, with a budget, in time,
  whichever is further: a budget that ends training early still gets a full schedule (and
  the run is then reproducible only as far as the machine's speed is).
- Batches hold rows of similar token length, in random order (``_sampler``): the trainer pads a
  batch to its longest row, and random batches of abstracts padded to 1.9x their tokens.
- Ctrl-C: the first press ends training after the current step and the weights are saved (the
  last complete step, never a half-applied update); a second press aborts at once.
- ``dev``: the model is evaluated on dev queries before the first step and at evenly spaced points,
  and the best evaluation's weights (the base's when no step beats it) are the ones saved (``_select``).
"""

from __future__ import annotations

import importlib
import math
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..._prompts import measure, resolve_prompt
from ..._resolve import native_bfloat16, resolve_device
from ..._sources import model_source, quiet_progress_bars
from ._objective import Loss, check_loss, objective
from ._pairs import TrainingPairs
from ._sampler import length_grouped
from ._select import DEV_SIGNIFICANCE, BestStep, DevSet, check_significance, model_scorer, trainer_callback

EXTRA = "ce-rerank[train]"


def require_training() -> tuple[ModuleType, ModuleType]:
    """Import what training needs (``datasets``, ``accelerate``) or say which extra to install."""
    mods = []
    for name in ("datasets", "accelerate"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError as exc:
            raise ImportError(f"fine-tuning needs the optional package {name!r}: pip install '{EXTRA}'") from exc
    return mods[0], mods[1]


@dataclass
class TrainingResult:
    """What one training run did.

    Attributes:
        steps: optimiser steps taken.
        planned_steps: steps the epochs would have taken.
        pairs_seen: training pairs the steps consumed (steps x batch size, the last batch may be smaller;
            ``"lambda"``: lists taken x the mean pairs a list).
        stopped: ``"completed"``, ``"max-minutes"`` or ``"interrupted"`` (Ctrl-C).
        seconds: wall time of training.
        loss: mean training loss over the steps taken.
        precision: ``"bf16"``, ``"fp16"`` or ``"fp32"``.
        device: where it ran.
        seed: the seed of weights' head, shuffling and dropout.
        epochs: epochs asked for; batch_size, learning_rate: as used.
        loss_function: ``"bce"`` or ``"lambda"`` (see ``_objective``).
        best_step: the step whose weights were saved (0: the base's), with a dev set; else None.
        dev: the dev evaluations (see :class:`~ce_rerank.workflows.finetune._select.BestStep`), or None.
        frozen_layers: transformer layers kept at the base's weights (with the embeddings when > 0).
        trainable_parameters: parameters the optimiser updated.
    """

    steps: int
    planned_steps: int
    pairs_seen: int
    stopped: str
    seconds: float
    loss: float | None
    precision: str
    device: str
    seed: int
    epochs: float
    batch_size: int
    learning_rate: float
    loss_function: str = "bce"
    best_step: int | None = None
    dev: dict[str, Any] | None = None
    frozen_layers: int = 0
    trainable_parameters: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _schedule(planned: int, max_minutes: float | None) -> Any:
    """``lr_lambda`` for ``LambdaLR``: warm-up over the first 10% of progress, then linear decay to 0.

    Progress is the fraction of planned steps done or, with a budget, of the time spent,
    whichever is larger (the clock starts at the first step).
    """
    started: list[float] = []

    def factor(step: int) -> float:
        if not started:
            started.append(time.monotonic())
        done = step / planned
        if max_minutes is not None:
            done = max(done, (time.monotonic() - started[0]) / (max_minutes * 60))
        done = min(done, 1.0)
        if done < 0.1:
            return max(done, 1.0 / planned) / 0.1
        return max(0.0, (1.0 - done) / 0.9)

    return factor


def transformer_layers(model: Any) -> tuple[Any, Any]:
    """The embeddings module and the list of transformer layers of a ``CrossEncoder``'s network.

    The layers are the ``ModuleList`` of ``config.num_hidden_layers`` blocks inside the base model
    (``encoder.layer`` in BERT, MiniLM, XLM-R and ELECTRA; ``transformer.layer`` in DistilBERT; ``layers``
    in ModernBERT), so nothing here names one architecture.
    """
    import torch

    net = model.model
    core = getattr(net, "base_model", net)
    count = getattr(net.config, "num_hidden_layers", None)
    layers = next((m for m in core.modules() if isinstance(m, torch.nn.ModuleList) and len(m) == count), None)
    embeddings = getattr(core, "embeddings", None) or net.get_input_embeddings()
    if layers is None:
        raise ValueError(
            f"cannot find the {count} transformer layers of {type(net).__name__}: freeze_layers needs a "
            "BERT-style encoder; use freeze_layers=0"
        )
    return embeddings, layers


def check_freeze(layers: Any, count: int | None = None, model: str | None = None) -> None:
    """``freeze_layers`` is an integer >= 0 that, given the model's ``count`` layers, leaves one to train."""
    if isinstance(layers, bool) or not isinstance(layers, int) or layers < 0:
        raise ValueError(f"freeze_layers must be an integer >= 0, got {layers!r}")
    if count is not None and layers and layers >= count:
        of = f" of {model!r}" if model else ""
        raise ValueError(
            f"freeze_layers={layers} would freeze all {count} transformer layers{of}: use at most {count - 1}"
        )


def freeze(model: Any, layers: int) -> int:
    """Keep the embeddings and the first ``layers`` transformer layers at their weights; return the trainable count.

    Gradients then stop at the first trainable layer, so a step also costs less (no backward pass
    through the frozen ones).
    """
    if layers:
        embeddings, blocks = transformer_layers(model)
        check_freeze(layers, len(blocks))
        for module in (embeddings, *list(blocks)[:layers]):
            for p in module.parameters():
                p.requires_grad_(False)
    return sum(p.numel() for p in model.model.parameters() if p.requires_grad)


def _callbacks(max_minutes: float | None, progress: bool) -> tuple[Any, Any]:
    from transformers import TrainerCallback

    class Budget(TrainerCallback):  # type: ignore[misc]
        """Stop after the step that crosses ``max_minutes``."""

        def __init__(self) -> None:
            self.started = time.monotonic()
            self.hit = False

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.started = time.monotonic()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if max_minutes is not None and time.monotonic() - self.started >= max_minutes * 60:
                self.hit = True
                control.should_training_stop = True

    class Interrupt(TrainerCallback):  # type: ignore[misc]
        """First Ctrl-C: stop after this step (and save); second: abort."""

        def __init__(self) -> None:
            self.pressed = False
            self._previous: Any = None

        def _handler(self, signum: int, frame: Any) -> None:
            if self.pressed:
                raise KeyboardInterrupt
            self.pressed = True
            if progress:
                sys.stderr.write("\nCtrl-C: training stops after this step and the model is saved; again to abort\n")

        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if threading.current_thread() is threading.main_thread():
                self._previous = signal.signal(signal.SIGINT, self._handler)

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.pressed:
                control.should_training_stop = True

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.restore()

        def restore(self) -> None:
            if self._previous is not None:
                signal.signal(signal.SIGINT, self._previous)
                self._previous = None

    return Budget(), Interrupt()


def train_cross_encoder(
    base_model: str,
    pairs: TrainingPairs,
    output_dir: str | Path,
    *,
    epochs: float = 1.0,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    max_minutes: float | None = None,
    seed: int = 13,
    device: str | None = "auto",
    max_length: int | None = None,
    prompt: str | None = None,
    trust_remote_code: bool = False,
    progress: bool = False,
    callbacks: Sequence[Any] = (),
    dev: DevSet | None = None,
    dev_evaluations: int = 10,
    dev_significance: float = DEV_SIGNIFICANCE,
    freeze_layers: int = 0,
    loss: Loss = "bce",
) -> TrainingResult:
    """Fine-tune ``base_model`` on ``pairs`` and save the cross-encoder to ``output_dir``.

    ``loss="bce"``: binary cross-entropy on the logit for one-output models (the loss of the ms-marco
    cross-encoders), cross-entropy over the two classes for two-output models; ``"lambda"``: the listwise
    ``LambdaLoss`` over each query's rows (see ``_objective``).

    Args:
        base_model: hub id or directory of the cross-encoder to start from.
        pairs: the rows (see :func:`mine_pairs`).
        output_dir: where the trained model is saved (a directory ``CrossEncoder`` and both adapters load).
        epochs: passes over the rows.
        batch_size: pairs per optimiser step (``"lambda"``: the most documents in one query's list, one
            list a step).
        learning_rate: peak learning rate (linear warm-up over the first 10% of the run, then linear decay;
            with ``max_minutes``, the run is whichever of the steps and the budget ends first).
        max_minutes: stop after the step that crosses this budget, and save.
        seed: seeds torch, shuffling and dropout: the same seed, data and machine give the same weights.
        device: ``"auto"`` (cuda, then mps, then cpu) or a torch device.
        max_length: model window in tokens (default: the model's).
        prompt: the instruction trained with, as scoring sends it (``CrossEncoder.preprocess(prompt=...)``:
            prepended to the query, or a chat-template model's system message); None: the model's
            ``default_prompt_name`` prompt, if it has one, as :class:`~ce_rerank.CrossEncoderScorer` resolves
            it; ``""``: none.
        trust_remote_code: let transformers run the model repository's own code (as the scorer's setting).
        progress: the trainer's progress bar and loss lines on the terminal.
        callbacks: extra ``transformers.TrainerCallback`` objects.
        dev: dev queries to keep the best step by (NDCG@10, the base included); None saves the last step.
        dev_evaluations: dev evaluations after the base, evenly spaced over the run's progress.
        dev_significance: the best dev step is kept only when a paired t-test of its per-query dev NDCG@10
            against the base's gives p <= this; else the base is saved (1: keep it whenever it is better).
        freeze_layers: keep the embeddings and the first N transformer layers at the base's weights (0: train
            all): fewer weights to fit to a few dozen queries, and cheaper steps.
        loss: ``"bce"`` (pointwise) or ``"lambda"`` (listwise, one-output models).
    """
    for name, value in (("batch_size", batch_size),):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    check_freeze(freeze_layers)
    check_loss(loss, batch_size)
    if not epochs > 0:
        raise ValueError(f"epochs must be > 0, got {epochs!r}")
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0 or None (no limit), got {max_minutes!r}")
    if isinstance(dev_evaluations, bool) or not isinstance(dev_evaluations, int) or dev_evaluations < 1:
        raise ValueError(f"dev_evaluations must be an integer >= 1, got {dev_evaluations!r}")
    check_significance(dev_significance)
    if not len(pairs):
        raise ValueError("no training pairs: every training query lacked positives or candidates")
    datasets, _ = require_training()
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder, CrossEncoderTrainer, CrossEncoderTrainingArguments
    from transformers import PrinterCallback, set_seed

    where = resolve_device(device)
    set_seed(seed)
    with model_source(base_model) as source:  # fail fast offline; no progress bars while loading
        model = CrossEncoder(
            base_model, device=where, max_length=max_length, trust_remote_code=trust_remote_code, **source
        )
    prompt = resolve_prompt(model, prompt=prompt, prompt_name=None) or None  # what inference sends
    trainable = freeze(model, freeze_layers)
    window = int(getattr(model, "max_seq_length", None) or model.tokenizer.model_max_length)
    # each row's length as the model reads it (prompt and any chat template included), cut to the window
    lengths = [min(n, window) for n in measure(model, prompt, list(zip(pairs.queries, pairs.passages, strict=True)))]
    task = objective(loss, model, base_model, pairs, lengths, batch_size)
    rows = datasets.Dataset.from_dict(task.rows)
    kind = where.split(":", 1)[0]
    bf16 = (kind == "cpu" and native_bfloat16()) or (kind == "cuda" and torch.cuda.is_bf16_supported())
    fp16 = kind == "cuda" and not bf16
    steps_per_epoch = math.ceil(len(rows) / task.rows_per_step)
    planned = max(1, math.ceil(steps_per_epoch * epochs))
    budget, interrupt = _callbacks(max_minutes, progress)
    best = None
    if dev is not None and len(dev):
        score = model_scorer(model, dev, bf16=bf16)
        best = BestStep(
            model,
            dev,
            score,
            planned=planned,
            max_minutes=max_minutes,
            evaluations=dev_evaluations,
            significance=dev_significance,
        )
        callbacks = [*callbacks, trainer_callback(best)]
    with tempfile.TemporaryDirectory(prefix="ce-rerank-train-") as scratch:
        args = CrossEncoderTrainingArguments(
            output_dir=scratch,
            num_train_epochs=epochs,
            per_device_train_batch_size=task.rows_per_step,
            learning_rate=learning_rate,
            seed=seed,
            data_seed=seed,
            bf16=bf16,
            fp16=fp16,
            use_cpu=kind == "cpu",
            save_strategy="no",
            report_to="none",
            logging_steps=max(1, planned // 10),
            disable_tqdm=not progress,
            dataloader_num_workers=0,
            batch_sampler=length_grouped(task.lengths),  # batches of similar length: less padding (_sampler)
            prompts=prompt,  # the collator hands it to the loss, which passes it to CrossEncoder.preprocess
        )
        schedule = _schedule(planned, max_minutes)

        class Trainer(CrossEncoderTrainer):  # type: ignore[misc]
            """The trainer with the step-or-time schedule of :func:`_schedule`."""

            def create_scheduler(self, num_training_steps: int, optimizer: Any = None) -> Any:
                if self.lr_scheduler is None:
                    opt: Any = optimizer if optimizer is not None else self.optimizer
                    self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(opt, schedule)
                return self.lr_scheduler

        trainer = Trainer(
            model=model, args=args, train_dataset=rows, loss=task.loss, callbacks=[budget, interrupt, *callbacks]
        )
        if not progress:
            trainer.remove_callback(PrinterCallback)
        started = time.monotonic()
        try:
            output = trainer.train()
        finally:
            interrupt.restore()
        steps = int(trainer.state.global_step)
        if best is not None:
            best.finish(steps)
        seconds = time.monotonic() - started
    stopped = "interrupted" if interrupt.pressed else "max-minutes" if budget.hit and steps < planned else "completed"
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_progress_bars():
        model.save_pretrained(str(out))
    return TrainingResult(
        steps=steps,
        planned_steps=planned,
        pairs_seen=round(min(steps * task.rows_per_step, math.ceil(epochs * len(rows))) * task.pairs_per_row),
        stopped=stopped,
        seconds=round(seconds, 3),
        loss=float(output.training_loss) if steps else None,
        precision="bf16" if bf16 else "fp16" if fp16 else "fp32",
        device=where,
        seed=seed,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        loss_function=loss,
        best_step=best.best_step if best is not None else None,
        dev=best.summary() if best is not None else None,
        frozen_layers=freeze_layers,
        trainable_parameters=trainable,
    )
