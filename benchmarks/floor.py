"""The arithmetic floor: useful FLOPs of a workload against measured kernel throughput.

Useful FLOPs count each pair at its real token length (no padding), multiply-adds as 2.
MiniLM-L6: 6 layers, H = 384, 12 heads of 32. Per full layer: 24*L*H^2 for the projections
and the feed-forward block, 4*L^2*H for attention. The last layer is needed for the first
token only (what the classification head reads; ce-rerank computes just that): 4*L*H^2 for
its keys and values, the rest is negligible.

Two floors per workload and precision:

- matmul floor: all FLOPs at the best burst of a torch matmul of the feed-forward shape;
- kernel floor: projection/feed-forward FLOPs at that matmul rate, attention FLOPs at the
  measured rate of torch's fused attention (``scaled_dot_product_attention``, the kernel
  transformers uses) on a representative shape with a padding mask.

``--engine openvino`` measures the same two kernels compiled by OpenVINO's CPU plugin (a MatMul
and a ScaledDotProductAttention op, f32 or bf16 inference precision, the thread count given):
the floor of the OpenVINO engine, which ``backend="auto"`` runs.

    OMP_NUM_THREADS=1 python benchmarks/floor.py [--threads 1] [--engine torch|openvino] [--workloads ...]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import _workloads as W

LAYERS, HIDDEN, HEADS = 6, 384, 12


def useful_gflop(query: str, texts: list[str], tokenizer) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    """(projection + feed-forward GFLOP, attention GFLOP) for one call."""
    lengths = [len(ids) for ids in tokenizer([query] * len(texts), texts, truncation=True, max_length=512)["input_ids"]]
    linear = sum((LAYERS - 1) * 24 * n * HIDDEN**2 + 4 * n * HIDDEN**2 for n in lengths)
    attention = sum((LAYERS - 1) * 4 * n * n * HIDDEN for n in lengths)
    return linear / 1e9, attention / 1e9


def best_rate(fn: Callable[[], object], flop: float, seconds: float = 2.0) -> float:
    """GFLOP/s of the best burst of ``fn``: the floor is what the hardware can do, not the load's share."""
    for _ in range(3):
        fn()
    rates = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        for _ in range(5):
            fn()
        rates.append(5 * flop / (time.perf_counter() - start) / 1e9)
    return max(rates)


def rates(dtype: str) -> tuple[float, float]:
    """(matmul GFLOP/s, fused attention GFLOP/s) under ``dtype`` (bfloat16 as autocast does it)."""
    import torch
    import torch.nn.functional as F

    t = torch.bfloat16 if dtype == "bfloat16" else torch.float32
    a = torch.randn(2048, HIDDEN, dtype=t)
    b = torch.randn(HIDDEN, 4 * HIDDEN, dtype=t)
    batch, length, head = 8, 256, HIDDEN // HEADS
    q, k, v = (torch.randn(batch, HEADS, length, head, dtype=t) for _ in range(3))
    mask = torch.ones(batch, 1, 1, length, dtype=torch.bool)
    mask[: batch // 2, ..., length - 16 :] = False  # some padding, as in a length-sorted batch
    with torch.inference_mode():
        mm = best_rate(lambda: a @ b, 2 * a.shape[0] * a.shape[1] * b.shape[1])
        att = best_rate(
            lambda: F.scaled_dot_product_attention(q, k, v, attn_mask=mask), 4 * batch * HEADS * length**2 * head
        )
    return mm, att


def openvino_rates(dtype: str, threads: int) -> tuple[float, float]:
    """(matmul GFLOP/s, fused attention GFLOP/s) of OpenVINO's CPU plugin at ``dtype`` inference precision."""
    import numpy as np
    import openvino as ov
    import openvino.opset13 as ops

    core = ov.Core()
    config = {
        "INFERENCE_PRECISION_HINT": "bf16" if dtype == "bfloat16" else "f32",
        "INFERENCE_NUM_THREADS": threads,
        "PERFORMANCE_HINT": "LATENCY",
    }
    rng = np.random.default_rng(0)
    a = rng.standard_normal((2048, HIDDEN), dtype=np.float32)
    x = ops.parameter([2048, HIDDEN], ov.Type.f32)
    w = ops.constant(rng.standard_normal((HIDDEN, 4 * HIDDEN), dtype=np.float32))
    mm_model = core.compile_model(ov.Model([ops.matmul(x, w, False, False)], [x]), "CPU", config)
    mm_request = mm_model.create_infer_request()
    batch, length, head = 8, 256, HIDDEN // HEADS
    q, k, v = (rng.standard_normal((batch, HEADS, length, head), dtype=np.float32) for _ in range(3))
    mask = np.zeros((batch, 1, 1, length), dtype=np.float32)
    mask[: batch // 2, ..., length - 16 :] = -np.inf  # some padding, as in a length-sorted batch
    params = [ops.parameter(list(t.shape), ov.Type.f32) for t in (q, k, v, mask)]
    att_model = core.compile_model(
        ov.Model([ops.scaled_dot_product_attention(*params, causal=False)], params), "CPU", config
    )
    att_request = att_model.create_infer_request()
    mm = best_rate(lambda: mm_request.infer([a]), 2 * a.shape[0] * a.shape[1] * 4 * HIDDEN)
    att = best_rate(lambda: att_request.infer([q, k, v, mask]), 4 * batch * HEADS * length**2 * head)
    return mm, att


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workloads", default="retrieval-100,retrieval-1000,wikiqa")
    ap.add_argument("--queries", default="wikiqa=10,retrieval-100=2,retrieval-1000=1")
    ap.add_argument("--engine", choices=["torch", "openvino"], default="torch")
    args = ap.parse_args()
    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(args.threads)
    tok = AutoTokenizer.from_pretrained(str(W.MODEL))
    if args.engine == "openvino":
        measured = {d: openvino_rates(d, args.threads) for d in ("float32", "bfloat16")}
    else:
        measured = {d: rates(d) for d in ("float32", "bfloat16")}
    for d, (mm, att) in measured.items():
        print(
            f"{args.engine} {d} ({args.threads} thread(s), best burst): matmul {mm:.0f} GFLOP/s, "
            f"fused attention {att:.0f} GFLOP/s"
        )
    n_queries = dict((k, int(v)) for k, v in (x.split("=") for x in args.queries.split(",")))
    for w in args.workloads.split(","):
        calls = W.WORKLOADS[w][0](n_queries.get(w, 1))
        parts = [useful_gflop(q, t, tok) for q, t in calls]
        linear = statistics.fmean(p[0] for p in parts)
        attention = statistics.fmean(p[1] for p in parts)
        pairs = statistics.fmean(len(t) for _, t in calls)
        line = f"{w}: {linear + attention:.0f} GFLOP per call ({linear:.0f} projections/feed-forward, "
        line += f"{attention:.0f} attention; {pairs:.0f} pairs)"
        for d, (mm, att) in measured.items():
            matmul_floor = (linear + attention) / mm
            kernel_floor = linear / mm + attention / att
            line += f"; {d}: matmul floor {matmul_floor:.2f} s, kernel floor {kernel_floor:.2f} s"
        print(line)


if __name__ == "__main__":
    main()
