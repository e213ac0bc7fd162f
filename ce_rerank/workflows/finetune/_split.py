"""Which judged queries are trained on and which are held out, so that no evaluation query is ever trained on."""

from __future__ import annotations

import math
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..evaluation._data import Dataset, DatasetError, _read_qrels, load_beir

#: Fewest held-out queries a verdict is drawn from, and fewest judged queries to train on.
MIN_EVAL_QUERIES = 3
MIN_TRAIN_QUERIES = 3


@dataclass(frozen=True)
class QuerySplit:
    """The dataset with its training and evaluation queries.

    Attributes:
        dataset: corpus and queries; ``qrels`` holds the judgments of both sides.
        train_queries: judged query ids trained on (sorted).
        eval_queries: judged query ids evaluated on (sorted); disjoint from ``train_queries``.
        method: ``"files"`` (a train and an eval qrels file), ``"holdout"`` (a seeded split of
            one file) or ``"none"`` (every judged query is evaluated; training data comes from
            generated queries).
        details: what the report says about the split (files, fraction, seed, overlaps dropped).
    """

    dataset: Dataset
    train_queries: list[str]
    eval_queries: list[str]
    method: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        leaked = set(self.train_queries) & set(self.eval_queries)
        if leaked:  # the one invariant everything else relies on
            raise AssertionError(f"training and evaluation queries overlap: {sorted(leaked)[:3]}")


def _judged(qrels: dict[str, dict[str, int]], queries: dict[str, str]) -> list[str]:
    return sorted(q for q, docs in qrels.items() if q in queries and any(g >= 1 for g in docs.values()))


def holdout_split(query_ids: list[str], *, holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """Split ids into ``(train, eval)``: ``ceil(holdout * n)`` held out, chosen by a seeded shuffle.

    The result depends only on the set of ids, ``holdout`` and ``seed`` (ids are sorted first).
    """
    if isinstance(holdout, bool) or not isinstance(holdout, (int, float)) or not 0 < holdout < 1:
        raise ValueError(f"holdout must be a fraction between 0 and 1 (e.g. 0.3), got {holdout!r}")
    ids = sorted(set(query_ids))
    random.Random(seed).shuffle(ids)
    n_eval = math.ceil(holdout * len(ids))
    return sorted(ids[n_eval:]), sorted(ids[:n_eval])


def split_queries(
    path: str | os.PathLike[str],
    *,
    eval_split: str = "test",
    train_split: str | None = None,
    holdout: float | None = None,
    seed: int = 13,
    judged_training: bool = True,
) -> QuerySplit:
    """Load a BEIR-layout dataset and decide which judged queries train and which evaluate.

    - ``train_split`` given, or ``qrels/train.tsv`` present: train on that file's judged queries,
      evaluate on ``qrels/<eval_split>.tsv``'s; a query judged in both is evaluated, never trained on.
    - otherwise: a seeded split of ``eval_split``'s judged queries, ``holdout`` (default 0.3) held out.
    - ``judged_training=False`` (generated training queries) and no train file nor ``holdout``:
      every judged query is evaluated.

    Raises:
        DatasetError: a file is missing or malformed, or there are too few judged queries.
        ValueError: ``holdout`` is not a fraction, or is given together with a train file.
    """
    root = Path(path).expanduser()
    data = load_beir(root, split=eval_split)
    eval_file = f"qrels/{eval_split}.tsv"
    train_name = train_split
    if train_name is None and eval_split != "train" and (root / "qrels" / "train.tsv").is_file():
        train_name = "train"
    if train_name is not None and train_name == eval_split:
        raise ValueError(f"--train-split and --eval-split both name qrels/{eval_split}.tsv: give two different files")
    if train_name is not None:
        train_file = root / "qrels" / f"{train_name}.tsv"
        if not train_file.is_file():
            raise DatasetError(f"{root} has no qrels/{train_name}.tsv (the training split named by --train-split)")
        if holdout is not None:
            raise ValueError(
                f"holdout splits {eval_file} when there is no training file, but qrels/{train_name}.tsv is there: "
                "drop --holdout, or give --train-split NAME of another file"
            )
        train_qrels = _read_qrels(train_file)
        evals = _judged(data.qrels, data.queries)
        eval_set = set(evals)
        judged_train = _judged(train_qrels, data.queries)
        trains = [q for q in judged_train if q not in eval_set]
        without_text = sorted(q for q in train_qrels if q not in data.queries)
        merged = {q: dict(d) for q, d in train_qrels.items() if q in trains}
        merged.update({q: dict(data.qrels[q]) for q in evals})
        details: dict[str, Any] = {
            "train_file": f"qrels/{train_name}.tsv",
            "eval_file": eval_file,
            "dropped_from_training_because_evaluated": len(judged_train) - len(trains),
            "train_qrels_queries_without_text": len(without_text),
        }
        method = "files"
    elif holdout is None and not judged_training:
        evals, trains, merged = _judged(data.qrels, data.queries), [], data.qrels
        details = {"eval_file": eval_file, "note": "every judged query is evaluated; training queries are generated"}
        method = "none"
    else:
        fraction = 0.3 if holdout is None else holdout
        trains, evals = holdout_split(_judged(data.qrels, data.queries), holdout=fraction, seed=seed)
        merged = data.qrels
        details = {"file": eval_file, "holdout": fraction, "seed": seed}
        method = "holdout"
    if len(evals) < MIN_EVAL_QUERIES:
        raise DatasetError(
            f"too few judged queries to evaluate on: {len(evals)} held out of {eval_file} (at least "
            f"{MIN_EVAL_QUERIES} needed): judge more queries, or raise --holdout"
        )
    if judged_training and len(trains) < MIN_TRAIN_QUERIES:
        raise DatasetError(
            f"too few judged queries to train on: {len(trains)} (at least {MIN_TRAIN_QUERIES} needed): judge more "
            "queries, add qrels/train.tsv, lower --holdout, or train on generated queries (--generate-queries "
            "ollama:MODEL)"
        )
    dataset = Dataset(name=data.name, corpus=data.corpus, queries=data.queries, qrels=merged)
    return QuerySplit(dataset=dataset, train_queries=trains, eval_queries=evals, method=method, details=details)
