"""Exploratory (round 15b of finetune.md): train on judged queries plus document titles as pseudo-queries.

Not a feature yet. It runs ``finetune``'s steps with one addition. ``N`` documents are sampled (seeded), each with
a title of at least 4 words and a body of at least 20. Each one's title becomes a query whose positive is that
document's body (the title cut off). Its negatives are 4 of BM25's best 30 documents for the title (the document
itself excluded), also without their titles. These rows join the judged training pairs that ``finetune`` mines.
Everything else is ``finetune``'s default: the seeded split, the dev set and dev test, 15 minutes at 2e-5, and
the gate with chosen fusion weights. The classic collections have a title on every document except MEDLINE, and
NPL's documents are titles:

    python benchmarks/title_queries.py ../shared/data/cranfield 600 /tmp/tq-cranfield \\
        --model ../shared/models/general-minilm-ce

It prints the pair counts, then one JSON line: held-out NDCG@10 of each system, steps, the dev curve, the step
kept and its dev test, the fusion weights, and the tuned-vs-base and tuned-vs-BM25 comparisons.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import torch

from ce_rerank import CrossEncoderScorer
from ce_rerank.workflows.evaluation._data import Dataset, ranked_ids
from ce_rerank.workflows.evaluation._first_stage import first_stage_run
from ce_rerank.workflows.finetune._pairs import mine_pairs
from ce_rerank.workflows.finetune._run import _dev_split, _like, gate_with_fusion
from ce_rerank.workflows.finetune._select import build_dev_set
from ce_rerank.workflows.finetune._split import split_queries
from ce_rerank.workflows.finetune._train import train_cross_encoder


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dataset", help="a BEIR-layout folder whose corpus has titles")
    p.add_argument("pseudo", type=int, help="how many documents' titles become training queries")
    p.add_argument("output", help="a new folder for the model")
    p.add_argument("--model", default="../shared/models/general-minilm-ce")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--max-minutes", type=float, default=15.0)
    args = p.parse_args()
    torch.set_num_threads(2)
    seed, started = args.seed, time.monotonic()
    split = split_queries(args.dataset, eval_split="test", train_split=None, holdout=None, seed=seed)
    data = split.dataset
    titles: dict[str, tuple[str, str]] = {}
    for line in (Path(args.dataset) / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        o = json.loads(line)
        title, body = (o.get("title") or "").strip(), (o.get("text") or "").strip()
        if body.startswith(title):
            body = body[len(title) :].strip()
        if len(title.split()) >= 4 and len(body.split()) >= 20:
            titles[str(o["_id"])] = (title, body)
    rng = random.Random(seed)
    picked = rng.sample(sorted(titles), min(args.pseudo, len(titles)))
    pseudo = {f"title:{d}": titles[d][0] for d in picked}
    data = Dataset(
        name=data.name,
        corpus=data.corpus,
        queries={**data.queries, **pseudo},
        qrels={**data.qrels, **{f"title:{d}": {d: 1} for d in picked}},
    )
    base = CrossEncoderScorer(args.model)
    base.load()
    label, run = first_stage_run(data, "bm25", top_k=100)
    train_ids, dev_ids, _ = _dev_split(list(split.train_queries), 0.2, seed)
    dev = build_dev_set(data, run, dev_ids, base, depth=30)
    pairs = mine_pairs(data, run, train_ids, base, negatives=4, depth=30, negative_filter="base", seed=seed)
    judged = len(pairs.labels)
    for d in picked:
        q = f"title:{d}"
        pairs.add(q, pseudo[q], titles[d][1], 1.0)
        candidates = [c for c in ranked_ids(run[q])[:30] if c != d]
        for c in rng.sample(candidates, min(4, len(candidates))):
            pairs.add(q, pseudo[q], titles[c][1] if c in titles else data.corpus[c], 0.0)
    print("pairs: judged", judged, "pseudo", len(pairs.labels) - judged, "mining s", round(time.monotonic() - started))
    model_dir = Path(args.output) / "model"
    training = train_cross_encoder(
        base.model_name,
        pairs,
        model_dir,
        epochs=3,
        batch_size=16,
        learning_rate=2e-5,
        max_minutes=args.max_minutes,
        seed=seed,
        device=base.device,
        max_length=base.max_length,
        prompt=base.scored_prompt() or "",
        dev=dev,
        dev_evaluations=10,
        dev_significance=0.05,
    )
    tuned = _like(base, str(model_dir))
    choices, gate = gate_with_fusion(
        data,
        run,
        split,
        dev_ids,
        base,
        tuned,
        trained=training.best_step != 0,
        first_stage_name=label,
        candidates=30,
        fusion="rrf",
        fusion_weights="learn",
    )
    dev_report = training.dev or {}
    result = {
        "metrics": {k: round(v["ndcg@10"], 4) for k, v in gate.metrics.items()},
        "training": training.as_dict()["steps"],
        "dev": dev_report.get("evaluations"),
        "kept": dev_report.get("kept"),
        "test": dev_report.get("test"),
        "weights": {n: c.rrf_weights for n, c in choices.items()},
        "tuned_vs_base": gate.comparisons["tuned_vs_base"],
        "tuned_vs_first_stage": gate.comparisons["tuned_vs_first_stage"],
        "seconds": round(time.monotonic() - started),
    }
    print(json.dumps(result, default=str))


if __name__ == "__main__":
    main()
