"""The arithmetic floor: useful FLOPs of a workload against measured matmul throughput.

Useful FLOPs count each pair at its real token length (no padding): per encoder layer,
24*L*H^2 for the projections and the feed-forward block plus 4*L^2*H for attention
(multiply-adds counted as 2), MiniLM-L6: 6 layers, H = 384. Throughput is a torch matmul of
the feed-forward shape (the bulk of the work), fp32 and under bfloat16 autocast.

    OMP_NUM_THREADS=1 python benchmarks/floor.py [--threads 1] [--workloads retrieval-100,wikiqa]
"""

from __future__ import annotations

import argparse
import statistics
import time

import _workloads as W

LAYERS, HIDDEN = 6, 384


def useful_gflop(query: str, texts: list[str], tokenizer) -> float:  # type: ignore[no-untyped-def]
    lengths = [len(ids) for ids in tokenizer([query] * len(texts), texts, truncation=True, max_length=512)["input_ids"]]
    return sum(LAYERS * (24 * n * HIDDEN**2 + 4 * n * n * HIDDEN) for n in lengths) / 1e9


def matmul_gflops(dtype: str, seconds: float = 2.0) -> float:
    import torch

    a = torch.randn(2048, HIDDEN)
    b = torch.randn(HIDDEN, 4 * HIDDEN)
    flop = 2 * a.shape[0] * a.shape[1] * b.shape[1]
    rates = []
    ctx = torch.autocast("cpu", dtype=torch.bfloat16) if dtype == "bfloat16" else torch.inference_mode()
    with torch.inference_mode(), ctx:
        for _ in range(3):
            a @ b
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            start = time.perf_counter()
            for _ in range(10):
                a @ b
            rates.append(10 * flop / (time.perf_counter() - start) / 1e9)
    return max(rates)  # the best burst: the floor is what the hardware can do, not the load's share


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workloads", default="retrieval-100,retrieval-1000,wikiqa")
    ap.add_argument("--queries", default="wikiqa=10,retrieval-100=2,retrieval-1000=1")
    args = ap.parse_args()
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(str(W.MODEL))
    rates = {d: matmul_gflops(d) for d in ("float32", "bfloat16")}
    print(
        f"matmul ({args.threads} thread(s), best burst): fp32 {rates['float32']:.0f} GFLOP/s, "
        f"bf16 {rates['bfloat16']:.0f} GFLOP/s"
    )
    n_queries = dict((k, int(v)) for k, v in (x.split("=") for x in args.queries.split(",")))
    for w in args.workloads.split(","):
        calls = W.WORKLOADS[w][0](n_queries.get(w, 1))
        g = statistics.fmean(useful_gflop(q, t, tok) for q, t in calls)
        pairs = statistics.fmean(len(t) for _, t in calls)
        print(
            f"{w}: {g:.0f} GFLOP per call ({pairs:.0f} pairs); floor {g / rates['float32']:.2f} s fp32 "
            f"({pairs * rates['float32'] / g:.0f} pairs/s), {g / rates['bfloat16']:.2f} s bf16 "
            f"({pairs * rates['bfloat16'] / g:.0f} pairs/s)"
        )


if __name__ == "__main__":
    main()
