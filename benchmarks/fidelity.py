"""The fidelity gate: does a fast path keep the ranking of exact float32?

On the cross-encoders in ../shared/models and real data (``--model``):

- ``wikiqa`` (the WikiQA-trained MiniLM): WikiQA test, each question (with at least one correct
  answer) and its own candidates; Cranfield, BM25 (bm25s) top 100 per query, long abstracts
  included (windowed as by default);
- ``general`` (the SQuAD+WikiQA MiniLM, see its TRAINING.md): its own sets, MEDLINE and NPL,
  BM25 top 100 per query.

Each fast path reranks the same candidates as the float32 reference (our scorer on torch with
``dtype="float32"``). A path passes when its NDCG@10 (ranx) is within 0.005 of the reference's
and its median per-query Kendall tau (scipy) against the reference's scores is at least 0.98,
on every dataset. A fast path that fails is not a default. Paths are timed round-robin, query
by query, so they share the same background load.

    OMP_NUM_THREADS=1 python benchmarks/fidelity.py [--model wikiqa|general] [--queries 15] [--wikiqa-queries 120]
        [--paths bfloat16,int8,openvino-bfloat16,openvino-float32,openvino-int8] [--json out.json]

Paths: ``bfloat16`` (torch autocast), ``int8`` (torch dynamic int8, ``backend="torch",
quantize="int8"``), ``openvino-bfloat16`` (what ``backend="auto"`` picks on a CPU with native
bfloat16), ``openvino-float32`` (what it picks elsewhere: must equal the reference),
``openvino-int8`` (NNCF static int8, ``quantize="int8"``). int8 paths are settings users can ask
for, never picked by ``auto`` unless they pass.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import _workloads as W

GATE = 0.005
TAU_GATE = 0.98
MODELS = {"wikiqa": W.MODEL, "general": W.SHARED / "models" / "general-minilm-ce"}
PATHS = {
    "bfloat16": {"backend": "torch", "dtype": "bfloat16"},
    "int8": {"backend": "torch", "quantize": "int8"},
    "openvino-bfloat16": {"backend": "openvino", "dtype": "bfloat16"},
    "openvino-float32": {"backend": "openvino", "dtype": "float32"},
    "openvino-int8": {"backend": "openvino", "quantize": "int8"},
}


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_scorers(model: str, paths: list[str]) -> dict[str, object]:
    from ce_rerank import CrossEncoderScorer

    scorers: dict[str, object] = {"float32": CrossEncoderScorer(model, backend="torch", dtype="float32")}
    for path in paths:
        if path not in PATHS:
            raise SystemExit(f"unknown path {path!r}: use {', '.join(PATHS)}")
        scorers[path] = CrossEncoderScorer(model, **PATHS[path])  # type: ignore[arg-type]
    return scorers


def retrieval_set(name: str, n_queries: int) -> tuple[list[tuple[str, str, list[str], list[str]]], dict]:
    col = W.load_collection(name)
    qids = [q for q in col.queries if q in col.qrels][:n_queries]
    top = W.bm25_top(col, qids, 100)
    calls = [(q, col.queries[q], [col.doc_ids[i] for i in top[q]], [col.texts[i] for i in top[q]]) for q in qids]
    return calls, {q: col.qrels[q] for q in qids}


def datasets(
    model: str, queries: int, wikiqa_queries: int, sets: list[str] | None = None
) -> dict[str, tuple[list[tuple[str, str, list[str], list[str]]], dict]]:
    """name -> ([(query id, query, doc ids, texts)], qrels)."""
    if sets:
        return {name: retrieval_set(name, queries) for name in sets}
    if model == "general":
        return {name: retrieval_set(name, queries) for name in ("medline", "npl")}
    out = {}
    wiki = []
    qrels_w: dict[str, dict[str, int]] = {}
    for qid, (q, texts, labels) in W.wikiqa_candidates().items():
        if not any(labels):
            continue
        ids = [f"{qid}-{i}" for i in range(len(texts))]
        qrels_w[qid] = {d: 1 for d, y in zip(ids, labels, strict=False) if y}
        wiki.append((qid, q, ids, texts))
    out["wikiqa"] = (wiki[:wikiqa_queries], {q: qrels_w[q] for q, *_ in wiki[:wikiqa_queries]})
    out["cranfield"] = retrieval_set("cranfield", queries)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", choices=sorted(MODELS), default="wikiqa")
    ap.add_argument("--queries", "--cranfield-queries", type=int, default=15, help="queries per BM25 set")
    ap.add_argument("--wikiqa-queries", type=int, default=120)
    ap.add_argument("--sets", default=None, help="only these BM25 sets, e.g. npl (default: the model's own)")
    ap.add_argument("--paths", default="bfloat16,int8,openvino-bfloat16,openvino-float32,openvino-int8")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args()
    W.require_shared()
    import torch
    from ranx import Qrels, Run, evaluate
    from scipy.stats import kendalltau

    torch.set_num_threads(args.threads)
    started = uptime()
    paths = args.paths.split(",")
    scorers = make_scorers(str(MODELS[args.model]), paths)
    names = list(scorers)
    load_seconds = {}
    for n, s in scorers.items():
        start = time.perf_counter()
        s.score("warm up", ["a short text", "another one"])  # type: ignore[attr-defined]
        load_seconds[n] = time.perf_counter() - start  # includes an OpenVINO conversion when not cached
    data = datasets(args.model, args.queries, args.wikiqa_queries, args.sets.split(",") if args.sets else None)
    results: dict = {
        "model": args.model,
        "uptime_start": started,
        "threads": args.threads,
        "gate": GATE,
        "tau_gate": TAU_GATE,
        "load_seconds": load_seconds,
        "datasets": {},
    }
    for dname, (calls, qrels) in data.items():
        runs: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
        seconds = {n: 0.0 for n in names}
        taus: dict[str, list[float]] = {n: [] for n in names if n != "float32"}
        max_diff = {n: 0.0 for n in names}
        for qid, q, ids, texts in calls:
            raw = {}
            for n in names:  # round-robin over the paths, query by query
                start = time.perf_counter()
                raw[n] = scorers[n].score(q, texts).raw  # type: ignore[attr-defined]
                seconds[n] += time.perf_counter() - start
                runs[n][qid] = {d: float(r) for d, r in zip(ids, raw[n], strict=False)}
            for n in taus:
                max_diff[n] = max(max_diff[n], max(abs(a - b) for a, b in zip(raw["float32"], raw[n], strict=True)))
                tau = kendalltau(raw["float32"], raw[n]).statistic
                taus[n].append(1.0 if tau != tau else float(tau))  # nan: constant scores, identical order
        qr = Qrels(qrels)
        metrics = {n: evaluate(qr, Run(runs[n]), ["ndcg@10", "map", "mrr@10"], make_comparable=True) for n in names}
        pairs = sum(len(t) for *_, t in calls)
        rows = {}
        for n in names:
            m = {k: float(v) for k, v in metrics[n].items()}
            row = {
                **m,
                "seconds": seconds[n],
                "pairs_per_s": pairs / seconds[n],
                "speedup": seconds["float32"] / seconds[n],
            }
            if n != "float32":
                d = m["ndcg@10"] - metrics["float32"]["ndcg@10"]
                row |= {
                    "delta_ndcg@10": d,
                    "passes": bool(abs(d) <= GATE and statistics.median(taus[n]) >= TAU_GATE),
                    "kendall_tau_mean": statistics.fmean(taus[n]),
                    "kendall_tau_median": statistics.median(taus[n]),
                    "kendall_tau_min": min(taus[n]),
                    "max_abs_raw_diff": max_diff[n],
                }
            rows[n] = row
        results["datasets"][dname] = {"queries": len(calls), "pairs": pairs, "paths": rows}
    results["uptime_end"] = uptime()
    results["verdict"] = {
        n: all(results["datasets"][d]["paths"][n]["passes"] for d in results["datasets"])
        for n in names
        if n != "float32"
    }
    print(markdown(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


def markdown(r: dict) -> str:
    lines = [
        f"model={r.get('model', 'wikiqa')}; threads={r['threads']}; "
        f"load at start: {r['uptime_start'].split('load average: ')[-1]}; "
        f"at end: {r['uptime_end'].split('load average: ')[-1]}",
        "",
        "| dataset | path | NDCG@10 | ΔNDCG@10 vs fp32 | MAP | MRR@10 | Kendall tau mean / median / min "
        "| max abs raw diff | pairs/s | speed vs fp32 | gate |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, block in r["datasets"].items():
        for n, row in block["paths"].items():
            if n == "float32":
                extra, tau, gate, diff = "(reference)", "1 / 1 / 1", "", "0"
            else:
                extra = f"{row['delta_ndcg@10']:+.4f}"
                tau = f"{row['kendall_tau_mean']:.3f} / {row['kendall_tau_median']:.3f} / {row['kendall_tau_min']:.3f}"
                gate = "pass" if row["passes"] else "FAIL"
                diff = f"{row['max_abs_raw_diff']:.2g}"
            lines.append(
                f"| {d} ({block['queries']} q, {block['pairs']} pairs) | {n} | {row['ndcg@10']:.4f} | {extra} | "
                f"{row['map']:.4f} | {row['mrr@10']:.4f} | {tau} | {diff} | {row['pairs_per_s']:.1f} | "
                f"{row['speedup']:.2f}x | {gate} |"
            )
    lines.append("")
    lines.append(
        "first start (s, conversion included where not cached): "
        + ", ".join(f"{n} {s:.1f}" for n, s in r.get("load_seconds", {}).items())
    )
    lines.append("verdict: " + ", ".join(f"{n}: {'passes' if ok else 'fails'}" for n, ok in r["verdict"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
