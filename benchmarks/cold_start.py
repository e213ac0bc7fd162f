"""Cold start: a new process, from ``import`` to the first scores of 10 passages, and its peak RSS.

    OMP_NUM_THREADS=1 python benchmarks/cold_start.py [--reps 3] [--json out.json]

Paths (the WikiQA MiniLM of ../shared/models): ``openvino`` (the default, ``backend="auto"``, with
its converted model already in the cache), ``openvino-first`` (the same with an empty cache folder:
the one-off conversion), ``torch`` (``backend="torch"``). Each process also reports which of torch,
sentence-transformers and transformers it imported. Repetitions alternate the paths.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import _workloads as W

CHILD = """
import json, resource, sys, time
start = time.perf_counter()
from ce_rerank import CrossEncoderScorer
scorer = CrossEncoderScorer(sys.argv[1], backend=sys.argv[2])
passages = [f"Passage {i}: the capital of France is Paris, on the Seine." for i in range(10)]
scorer.score("what is the capital of France?", passages)
print(json.dumps({
    "seconds": time.perf_counter() - start,
    "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    "engine": scorer.load().backend,
    "imported": [m for m in ("torch", "sentence_transformers", "transformers") if m in sys.modules],
}))
"""


def run(path: str, cache: str) -> dict:
    env = {**os.environ, "CE_RERANK_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1"}
    backend = "torch" if path == "torch" else "auto"
    wall = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(W.MODEL), backend], capture_output=True, text=True, env=env, check=True
    )
    row = json.loads(out.stdout.strip().splitlines()[-1])
    row["process_seconds"] = time.perf_counter() - wall  # interpreter start included
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    W.require_shared()
    uptime = lambda: subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()  # noqa: E731
    result: dict = {"uptime_start": uptime(), "runs": {"openvino-first": [], "openvino": [], "torch": []}}
    cache = tempfile.mkdtemp(prefix="ce-rerank-cold-")
    for _ in range(args.reps):
        fresh = tempfile.mkdtemp(prefix="ce-rerank-first-")
        result["runs"]["openvino-first"].append(run("openvino-first", fresh))
        result["runs"]["openvino"].append(run("openvino", cache))  # the first rep fills it, see below
        result["runs"]["torch"].append(run("torch", cache))
    result["runs"]["openvino"] = result["runs"]["openvino"][1:] or result["runs"]["openvino"]  # cached starts only
    result["uptime_end"] = uptime()
    print(f"load at start: {result['uptime_start']}")
    print("| path | new process to first scores (s), median | in-process part (s) | peak RSS MiB | imported |")
    print("|---|---|---|---|---|")
    for path, rows in result["runs"].items():
        rows = sorted(rows, key=lambda r: r["process_seconds"])
        mid = rows[len(rows) // 2]
        imported = ", ".join(mid["imported"]) or "none of torch, sentence-transformers, transformers"
        print(
            f"| {path} ({mid['engine']}) | {mid['process_seconds']:.2f} | {mid['seconds']:.2f} | "
            f"{mid['peak_rss_mib']:.0f} | {imported} |"
        )
    print(f"load at end: {result['uptime_end']}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
