"""Keeping the best step: dev queries taken from the training side, evaluated while training runs.

Fine-tuning a reranker on a few dozen judged queries often makes it worse (benchmarks/finetune.md,
round 3: 3 of 4 collections), and the last step is not where held-out quality peaks. So part of
the *training* queries (never an evaluation query) is kept out of the training pairs as a dev set;
the model is scored on it before the first step (the base) and at evenly spaced points of the
run's progress (steps or, with a budget, time: the learning-rate schedule's measure), and the
weights of the best evaluation are the ones saved. A later step must beat the best so far
strictly, so the base is kept when no step beats it.

A dev set of a few dozen queries is noisy, and the best of ten evaluations is the luckiest of ten:
in benchmarks/finetune.md (rounds 5-6) the step picked was +0.03 to +0.08 NDCG@10 over the base on
5-13 dev queries and -0.03 to -0.07 on the held-out ones. So the best step is kept only when it
beats the base on the dev queries by a paired t-test (the gate's test) with a p-value of at most
``significance`` (default :data:`DEV_SIGNIFICANCE`); otherwise the base is saved. ``1`` keeps the
best step whenever it is better on dev.

Dev evaluations cost time (on a 2-core CPU without bfloat16, one over 32 Cranfield queries took
about as long as 16 training steps): the time they take is not counted as training progress, and
with a budget there are only as many as fit in a quarter of it, judged by how long the base's took
(at least one, after the last step).

The dev evaluation reranks each dev query's first-stage candidates (the gate's depth) with the
model being trained, with the scorer's prompt, the query cut to the scorer's query budget and each
text cut into the scorer's windows and scored by its best window, as inference does;
NDCG@10 is computed by ``pytrec_eval`` like every other figure.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..._batching import plan_batches
from ..._local import CrossEncoderScorer, torch_raw_scores
from ..._prompts import measure
from ..evaluation._data import Dataset, Run, ranked_ids
from ..evaluation._metrics import evaluate_run
from ..evaluation._significance import PairedComparison, paired_comparison

DEV_METRIC = "ndcg@10"
MIN_DEV_QUERIES = 3
DEV_SIGNIFICANCE = 0.05  # the best step is kept when its dev gain over the base has a paired t-test p <= this
DEV_SHARE = 0.25  # with a budget, dev evaluations (the base's included) take at most this share of it


@dataclass
class DevSet:
    """The dev queries' (query, window) pairs, and which document each window belongs to.

    Attributes:
        query_ids: the dev queries.
        qrels: their judgments.
        queries: the query of each pair.
        texts: the window of each pair (the whole text when it fits).
        owners: ``(query id, document id)`` of each pair.
        prompt: the instruction the scorer sends with each pair (None: none).
    """

    query_ids: list[str]
    qrels: dict[str, dict[str, int]]
    prompt: str | None = None
    queries: list[str] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    owners: list[tuple[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    def run(self, raw: Sequence[float]) -> Run:
        """The dev run: each document scored by its best window."""
        out: Run = {q: {} for q in self.query_ids}
        for (q, d), r in zip(self.owners, raw, strict=True):
            if d not in out[q] or r > out[q][d]:
                out[q][d] = float(r)
        return out

    def ndcg(self, raw: Sequence[float]) -> tuple[float, dict[str, dict[str, float]]]:
        """The mean NDCG@10 over the dev queries, and each query's (query id -> metric -> value)."""
        means, per_query = evaluate_run(self.qrels, self.run(raw), query_ids=self.query_ids, metrics=[DEV_METRIC])
        return means[DEV_METRIC], per_query


def check_significance(value: object) -> None:
    """The dev test's threshold must be a p-value in (0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1:
        raise ValueError(
            f"dev_significance must be a p-value > 0 and <= 1 (1: keep the best dev step whenever it is better), "
            f"got {value!r}"
        )


def build_dev_set(
    dataset: Dataset, run: Run, query_ids: Sequence[str], scorer: CrossEncoderScorer, *, depth: int
) -> DevSet:
    """The pairs of the dev queries: their first ``depth`` candidates, in the scorer's windows."""
    dev = DevSet(
        query_ids=list(query_ids),
        qrels={q: dict(dataset.qrels.get(q, {})) for q in query_ids},
        prompt=scorer.scored_prompt(),  # the instruction inference sends, so dev scores are inference's
    )
    for q in query_ids:
        docs = [d for d in ranked_ids(run.get(q, {}))[:depth] if d in dataset.corpus]
        if not docs:
            continue
        texts = [dataset.corpus[d] for d in docs]
        query = scorer.scored_query(dataset.queries[q])  # cut to the query budget, as inference cuts it
        for d, text, spans in zip(docs, texts, scorer.window_spans(query, texts), strict=True):
            for a, b in spans:
                dev.queries.append(query)
                dev.texts.append(text[a:b])
                dev.owners.append((q, d))
    return dev


def model_scorer(
    model: Any, dev: DevSet, *, bf16: bool, batch_size: int = 32, max_batch_tokens: int = 2048
) -> Callable[[], list[float]]:
    """A function that scores every dev pair with ``model`` (a ``CrossEncoder``) as it is now: raw scores.

    The pairs are tokenised and batched once, by the scorer's batch planner (``plan_batches``, the
    scorer's defaults), and the same batches are run at every evaluation; scores are read as the scorer
    reads them (``torch_raw_scores``). The model is put in eval mode for the call (no dropout) and back
    in the mode it was in.
    """
    window = int(getattr(model, "max_seq_length", None) or model.tokenizer.model_max_length)
    pairs = list(zip(dev.queries, dev.texts, strict=True))
    lengths = [min(n, window) for n in measure(model, dev.prompt, pairs)] if pairs else []  # prompt, template counted
    plan = plan_batches(lengths, batch_size=batch_size, max_batch_tokens=max_batch_tokens)
    batches = [(idx, model.preprocess([pairs[i] for i in idx], prompt=dev.prompt)) for idx in plan]

    def score() -> list[float]:
        raw = [0.0] * len(dev)
        was_training = model.training
        model.eval()
        try:
            for idx, features in batches:
                out = torch_raw_scores(model, features, "bfloat16" if bf16 else "float32")
                for i, v in zip(idx, out.tolist(), strict=True):
                    raw[i] = v
        finally:
            model.train(was_training)
        return raw

    return score


class BestStep:
    """Evaluates on the dev set at the base and at evenly spaced points of progress; keeps the best weights.

    Args:
        model: the ``CrossEncoder`` being trained.
        dev: the dev set.
        score: scores the dev pairs with the model as it is (:func:`model_scorer`).
        planned: steps the epochs would take.
        max_minutes: the training budget, or None.
        evaluations: evaluation points after the base (progress 1/n, 2/n, ..., 1); with a budget, fewer
            when they would take more than :data:`DEV_SHARE` of it.
        significance: the best step is kept only when a paired t-test of its per-query dev NDCG@10
            against the base's gives a p-value of at most this (1: whenever it is better).
    """

    def __init__(
        self,
        model: Any,
        dev: DevSet,
        score: Callable[[], list[float]],
        *,
        planned: int,
        max_minutes: float | None,
        evaluations: int,
        significance: float = DEV_SIGNIFICANCE,
    ) -> None:
        check_significance(significance)
        self.model = model
        self.dev = dev
        self._score = score
        self.planned = planned
        self.max_minutes = max_minutes
        self.evaluations = self.asked = evaluations
        self.history: list[dict[str, float]] = []
        self.best_step = 0
        self.best_value = float("-inf")
        self.significance = significance
        self.test: PairedComparison | None = None  # the best step against the base, on the dev queries
        self.best_dev_step = 0  # the step with the best dev value, kept or not
        self._best_state: dict[str, Any] | None = None
        self._best_per_query: dict[str, dict[str, float]] = {}
        self._base_state: dict[str, Any] | None = None  # and the base's per-query values: the first evaluation's
        self._base_per_query: dict[str, dict[str, float]] = {}
        self._next = 1
        self._started = time.monotonic()
        self._dev_seconds = 0.0

    def evaluate(self, step: int) -> float:
        started = time.monotonic()
        value, per_query = self.dev.ndcg(self._score())
        self._dev_seconds += time.monotonic() - started
        self.history.append({"step": step, DEV_METRIC: round(value, 4), "seconds": round(started - self._started, 1)})
        if value > self.best_value:  # strictly better: ties keep the earlier step (the base first)
            self.best_value, self.best_step = value, step
            self._best_state = {k: v.detach().to("cpu", copy=True) for k, v in self.model.state_dict().items()}
            self._best_per_query = per_query
            if self._base_state is None:
                self._base_state, self._base_per_query = self._best_state, per_query
        return value

    def begin(self) -> None:
        self._started = time.monotonic()
        self.evaluate(0)
        if self.max_minutes is not None:  # as many as fit in DEV_SHARE of the budget, the base's included
            fit = int(DEV_SHARE * self.max_minutes * 60 / max(self._dev_seconds, 1e-9)) - 1
            self.evaluations = max(1, min(self.asked, fit))

    def step_end(self, step: int) -> None:
        done = step / self.planned
        if self.max_minutes is not None:  # training time: what dev evaluations took does not count
            trained = time.monotonic() - self._started - self._dev_seconds
            done = max(done, trained / (self.max_minutes * 60))
        if done * self.evaluations >= self._next:
            self._next = int(done * self.evaluations) + 1
            self.evaluate(step)

    def finish(self, step: int) -> None:
        """Evaluate the last step if that has not happened, test the best step against the base, and put the
        weights that are kept (the best step's, or the base's when its gain is not significant) in the model."""
        if self.history[-1]["step"] != step:
            self.evaluate(step)
        self.best_dev_step = self.best_step
        if self.best_step != 0:
            self.test = paired_comparison(
                self._base_per_query, self._best_per_query, metric=DEV_METRIC, query_ids=self.dev.query_ids
            )
            if not (self.test.delta > 0 and self.test.p_value <= self.significance):
                self.best_step, self._best_state = 0, self._base_state
        if self._best_state is not None and self.best_step != step:
            self.model.load_state_dict(self._best_state)

    def decision(self) -> str:
        """Which weights were kept and why, in a sentence (after :meth:`finish`)."""
        n = len(self.dev.query_ids)
        if self.test is None:
            return f"no training step beat the base on the {n} dev queries, so the saved model is the base"
        t = self.test
        change = f"{t.delta:+.4f}, {t.better} better / {t.worse} worse, paired t-test p={t.p_value:.3g}"
        if self.best_step:
            return f"step {self.best_step} beat the base on the {n} dev queries ({change} <= {self.significance:g})"
        return (
            f"the best step on the {n} dev queries (step {self.best_dev_step}: {change} > dev_significance "
            f"{self.significance:g}) was not significantly better than the base, so the saved model is the base"
        )

    def summary(self) -> dict[str, Any]:
        return {
            "queries": len(self.dev.query_ids),
            "pairs": len(self.dev),
            "metric": DEV_METRIC,
            "evaluations_asked": self.asked,
            "evaluations_planned": self.evaluations,
            "evaluations": self.history,
            "best_step": self.best_step,
            "best_dev_step": self.best_dev_step,
            "significance": self.significance,
            "test": self.test.as_dict() if self.test is not None else None,
            "kept": "base" if self.best_step == 0 else f"step {self.best_step}",
            "decision": self.decision(),
            "seconds": round(self._dev_seconds, 1),
        }


def trainer_callback(best: BestStep) -> Any:
    """``best`` as a ``transformers.TrainerCallback`` (base at the start, then the progress points)."""
    from transformers import TrainerCallback

    class KeepBest(TrainerCallback):  # type: ignore[misc]
        def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            best.begin()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            best.step_end(int(state.global_step))

    return KeepBest()
