"""Seconds per training step, all layers trained against ``--freeze-layers N``, interleaved in one process.

A step is what ``ce-rerank finetune`` runs: forward, BCE loss, backward and an AdamW update on a
batch of 16 (query, abstract) pairs of Cranfield (BM25 top candidates of the first judged
queries, whole abstracts, padded to the batch's longest as the trainer does), with the general
reranker of ../shared/models. The two settings alternate step by step on the same batches, so
machine load affects both alike; the first round of each is a warm-up and not counted.

    python benchmarks/train_step.py [--freeze 3] [--steps 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _workloads as W


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--freeze", type=int, default=3, help="layers frozen in the second setting (default 3)")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per setting (default 8)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    W.require_shared()
    import torch
    from sentence_transformers.cross_encoder import CrossEncoder

    from ce_rerank.workflows.finetune._train import freeze

    torch.set_num_threads(args.threads)
    model_dir = str(W.SHARED / "models" / "general-minilm-ce")
    calls = W.retrieval_calls("cranfield", 30, args.steps + 1)
    batches = [[(q, t) for t in texts[: args.batch_size]] for q, texts in calls]
    models = {}
    for layers in (0, args.freeze):
        torch.manual_seed(0)
        ce = CrossEncoder(model_dir, device="cpu")
        trainable = freeze(ce, layers)
        params = [p for p in ce.model.parameters() if p.requires_grad]
        models[layers] = (ce, torch.optim.AdamW(params, lr=2e-5), trainable)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    times: dict[int, list[float]] = {k: [] for k in models}
    tokens = []
    tokenizer = next(iter(models.values()))[0].tokenizer  # the same tokenizer for both settings
    for i, batch in enumerate(batches):
        features = tokenizer(
            [q for q, _ in batch], [t for _, t in batch], padding=True, truncation=True, return_tensors="pt"
        )
        for layers, (ce, opt, _) in models.items():
            ce.model.train()
            labels = torch.tensor([float(j % 2) for j in range(len(batch))])
            started = time.perf_counter()
            logits = ce.model(**features).logits.view(-1)
            loss = loss_fn(logits, labels)
            loss.backward()
            opt.step()
            opt.zero_grad()
            if i:  # the first round warms up
                times[layers].append(time.perf_counter() - started)
        if i:
            tokens.append(int(features["input_ids"].shape[1]))
    full = statistics.median(times[0])
    print(
        f"{args.steps} steps of {args.batch_size} Cranfield pairs (padded length median {statistics.median(tokens)}), "
        f"{args.threads} threads"
    )
    for layers, (_, _, trainable) in models.items():
        med = statistics.median(times[layers])
        print(
            f"freeze {layers}: {med:.2f} s/step median (min {min(times[layers]):.2f}), {trainable:,} trainable "
            f"parameters, {full / med:.2f}x the all-layers step"
        )


if __name__ == "__main__":
    main()
