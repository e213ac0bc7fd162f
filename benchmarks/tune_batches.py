"""Tune the core's batch defaults: seconds per call for batch settings x dtype, interleaved.

Also times the planning step alone (tokenising every text once to sort and batch), to see
what the second tokenisation (in ``CrossEncoder.preprocess``) costs.

    OMP_NUM_THREADS=2 python benchmarks/tune_batches.py [--reps 3] [--workload retrieval-100]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import time

import _workloads as W


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--workload", default="retrieval-100")
    ap.add_argument("--queries", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budgets", default="1024,2048,4096,8192")
    ap.add_argument("--dtypes", default="float32,bfloat16")
    args = ap.parse_args()
    W.require_shared()
    import torch

    torch.set_num_threads(args.threads)
    from ce_rerank import CrossEncoderScorer

    calls = W.WORKLOADS[args.workload][0](args.queries)
    print("uptime at start:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    configs = [(d, int(b)) for d in args.dtypes.split(",") for b in args.budgets.split(",")]
    scorers = {c: CrossEncoderScorer(str(W.MODEL), dtype=c[0], batch_size=64, max_batch_tokens=c[1]) for c in configs}
    for s in scorers.values():  # load and warm up
        s.score(calls[0][0], calls[0][1][:8])
    times: dict[tuple[str, int], list[float]] = {c: [] for c in configs}
    plan_times: list[float] = []
    for _ in range(args.reps):
        for c in configs:  # round-robin: every config sees the same background load
            start = time.perf_counter()
            for q, texts in calls:
                scorers[c].score(q, texts)
            times[c].append(time.perf_counter() - start)
        s = scorers[configs[0]]
        lm = s.load()
        start = time.perf_counter()
        for q, texts in calls:
            pairs, *_ = s._plan(lm, q, list(dict.fromkeys(texts)))
            list(s._batches(pairs))
        plan_times.append(time.perf_counter() - start)
    pairs = sum(len(t) for _, t in calls)
    for c in configs:
        sec = statistics.median(times[c])
        sample = scorers[c].score(calls[0][0], calls[0][1])
        print(
            f"{c[0]:>9} max_batch_tokens={c[1]:>5}: {sec:7.2f} s  {pairs / sec:6.1f} pairs/s  "
            f"batches/call {sample.batches}"
        )
    print(f"planning (tokenise + sort + batch) alone: {statistics.median(plan_times):.3f} s for {pairs} pairs")
    print("uptime at end:", subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip())
    print(f"threads={args.threads} OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}")


if __name__ == "__main__":
    main()
