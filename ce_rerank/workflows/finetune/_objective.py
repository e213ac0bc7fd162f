"""What training optimises: sentence-transformers' loss, and the dataset rows in the form that loss reads.

- ``"bce"`` (pointwise): one (query, passage, label) row per pair; ``BinaryCrossEntropyLoss`` on the logit
  of a one-output model (the loss the ms-marco cross-encoders were trained with), ``CrossEntropyLoss``
  over the two classes of a two-output model. A step is ``batch_size`` pairs.
- ``"lambda"`` (listwise): ``LambdaLoss`` with its NDCG-Loss2++ weighting (Wang et al. 2018), which
  weighs each mis-ordered (relevant, less relevant) pair of one query's list by what swapping them costs
  in NDCG, with the judged grades as gains. It only asks that each query's documents be in the right
  order, not that the scores be calibrated probabilities, which is all reranking needs. Each query's rows
  are dealt into lists of at most ``batch_size`` documents, positives spread evenly over them, so a list
  always holds a positive to rank above its negatives, and a step (one list) costs what a pointwise step
  of ``batch_size`` pairs does. One-output models only.
- ``"distill"`` (pointwise regression): ``MSELoss`` between the model's logit and a teacher's target for each
  (query, candidate) row, the rows and targets of :func:`~._distill.distill_lists` (the first stage fused with
  the base reranker, judged positives on top). A step is ``batch_size`` rows. One-output models only.

  On a CPU a list is run in forward passes of about :data:`LIST_PASS_TOKENS` tokens (its documents
  sorted by length, so each pass pads little), not in one pass: measured here (benchmarks/finetune.md,
  round 12), one padded pass over a Cranfield list of 16 took 3.7x as long as passes of 2 and 2.0x the
  memory, while NPL's short documents ran fastest 8 to a pass.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, get_args

from ._pairs import TrainingPairs

Loss = Literal["bce", "lambda", "distill"]
LOSSES: tuple[str, ...] = get_args(Loss)

#: On a CPU, LambdaLoss runs a list in forward passes of about this many tokens (at least one pair a pass).
LIST_PASS_TOKENS = 512


def check_loss(loss: Any, batch_size: int) -> None:
    if loss not in LOSSES:
        raise ValueError(f"loss must be one of {', '.join(map(repr, LOSSES))}, got {loss!r}")
    if loss == "lambda" and batch_size < 2:
        raise ValueError(
            f"loss 'lambda' ranks lists of up to the batch size's documents: batch size must be >= 2, got {batch_size}"
        )


def check_loss_for(loss: str, num_labels: int, model_name: str) -> None:
    """The loss must fit the model's outputs (as scoring loads the model): checked before any long work."""
    if num_labels not in (1, 2):
        raise ValueError(
            f"{model_name!r} has {num_labels} outputs: fine-tuning trains one-output (relevance logit) or "
            "two-output (not relevant / relevant) cross-encoders"
        )
    if loss in ("lambda", "distill") and num_labels != 1:
        raise ValueError(
            f"loss {loss!r} trains one relevance logit per pair, and {model_name!r} has {num_labels} outputs: "
            "use --loss bce (cross-entropy over its two classes)"
        )


@dataclass
class Objective:
    """The loss, the rows it reads, each row's token length (for length-grouped batches) and rows per step."""

    loss: Any
    rows: dict[str, list[Any]]
    lengths: list[int]
    rows_per_step: int
    pairs_per_row: float


def listwise_groups(query_ids: Sequence[str], labels: Sequence[float], size: int) -> list[list[int]]:
    """Row indices dealt into lists of at most ``size`` (>= 2) per query, each with a positive where it has one.

    Queries keep their first-seen order and rows their order within a query (the mined order is seeded), so
    the lists are deterministic. A query of ``n`` rows becomes ``ceil(n / size)`` lists, dealt round-robin
    over positives then negatives, so every list gets ``floor`` or ``ceil`` of the query's positives. When it
    has fewer positives than lists (more than ``size - 1`` negatives a positive), each list instead holds one
    positive, taken in turn and reused, and ``size - 1`` of the negatives: no row is left out and no list is
    without a document to rank above the others.
    """
    if size < 2:
        raise ValueError(f"a listwise list needs at least 2 documents: batch size must be >= 2, got {size}")
    by_query: dict[str, list[int]] = {}
    for i, qid in enumerate(query_ids):
        by_query.setdefault(qid, []).append(i)
    groups: list[list[int]] = []
    for rows in by_query.values():
        positives = [i for i in rows if labels[i] > 0]
        negatives = [i for i in rows if not labels[i] > 0]
        count = math.ceil(len(rows) / size)
        if len(positives) >= count or not positives:
            ordered = positives + negatives
            groups.extend(ordered[start::count] for start in range(count))
        else:
            count = math.ceil(len(negatives) / (size - 1))
            groups.extend([positives[j % len(positives)], *negatives[j::count]] for j in range(count))
    return groups


def objective(
    name: str, model: Any, model_name: str, pairs: TrainingPairs, lengths: Sequence[int], batch_size: int
) -> Objective:
    """Build ``name``'s loss on ``model`` and the rows of ``pairs`` it trains on (``lengths``: each pair's)."""
    from sentence_transformers.cross_encoder import losses

    check_loss(name, batch_size)
    check_loss_for(name, model.num_labels, model_name)
    if name in ("bce", "distill"):
        if name == "distill":
            loss: Any = losses.MSELoss(model)
            labels: list[Any] = [float(v) for v in pairs.labels]
        elif model.num_labels == 1:
            loss = losses.BinaryCrossEntropyLoss(model)
            labels = [float(v) for v in pairs.labels]
        else:
            loss = losses.CrossEntropyLoss(model)
            labels = [int(v) for v in pairs.labels]
        rows = {"query": list(pairs.queries), "passage": list(pairs.passages), "label": labels}
        return Objective(loss, rows, list(lengths), batch_size, 1.0)
    # each list's documents by length, so that the passes LambdaLoss cuts it into pad little (the order of a
    # list's documents does not change the loss)
    groups = [sorted(g, key=lengths.__getitem__) for g in listwise_groups(pairs.query_ids, pairs.labels, batch_size)]
    gains = pairs.grades if len(pairs.grades) == len(pairs) else pairs.labels  # rows built without grades
    rows = {
        "query": [pairs.queries[g[0]] for g in groups],
        "docs": [[pairs.passages[i] for i in g] for g in groups],
        "labels": [[float(gains[i]) for i in g] for g in groups],
    }
    # pairs a forward pass: the whole list off the CPU (not measured here), else about LIST_PASS_TOKENS tokens
    typical = max(1, statistics.median(lengths)) if lengths else 1
    per_pass = batch_size if model.device.type != "cpu" else max(1, min(batch_size, int(LIST_PASS_TOKENS // typical)))
    loss = losses.LambdaLoss(model, mini_batch_size=per_pass)
    listed = sum(len(g) for g in groups)  # a reused positive counts each time
    return Objective(loss, rows, [max(lengths[i] for i in g) for g in groups], 1, listed / len(groups))
