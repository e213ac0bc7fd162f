"""The fidelity gate: does a fast path keep the ranking of exact float32?

On the WikiQA-trained MiniLM cross-encoder in ../shared/models and real data:

- WikiQA test: each question (with at least one correct answer) and its own candidates;
- Cranfield: BM25 (bm25s) top 100 per query, long abstracts included (windowed as by default).

Each fast path reranks the same candidates as the float32 reference (our scorer with
``dtype="float32"``). A path passes when its NDCG@10 (ranx) is within 0.005 of the
reference's on every dataset; per-query Kendall tau (scipy) between its scores and the
reference's is reported. A fast path that fails is not a default. Paths are timed
round-robin, query by query, so they share the same background load.

    OMP_NUM_THREADS=1 python benchmarks/fidelity.py [--cranfield-queries 15] [--wikiqa-queries 120]
        [--paths bfloat16,int8] [--json out.json]

Paths: ``bfloat16`` (autocast; what ``dtype="auto"`` picks on a CPU with native bfloat16),
``int8`` (``quantize="int8"``: torch dynamic quantisation of every linear layer; a setting
users can ask for, never picked by ``auto`` unless it passes).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import _workloads as W

GATE = 0.005


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def make_scorers(paths: list[str]) -> dict[str, object]:
    from ce_rerank import CrossEncoderScorer

    scorers: dict[str, object] = {"float32": CrossEncoderScorer(str(W.MODEL), dtype="float32")}
    for path in paths:
        if path == "bfloat16":
            scorers[path] = CrossEncoderScorer(str(W.MODEL), dtype="bfloat16")
        elif path == "int8":
            scorers[path] = CrossEncoderScorer(str(W.MODEL), quantize="int8")
        else:
            raise SystemExit(f"unknown path {path!r}: use bfloat16 or int8")
    return scorers


def datasets(
    cranfield_queries: int, wikiqa_queries: int
) -> dict[str, tuple[list[tuple[str, str, list[str], list[str]]], dict]]:
    """name -> ([(query id, query, doc ids, texts)], qrels)."""
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
    col = W.load_collection("cranfield")
    qids = [q for q in col.queries if q in col.qrels][:cranfield_queries]
    top = W.bm25_top(col, qids, 100)
    cran = [(q, col.queries[q], [col.doc_ids[i] for i in top[q]], [col.texts[i] for i in top[q]]) for q in qids]
    out["cranfield"] = (cran, {q: col.qrels[q] for q in qids})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cranfield-queries", type=int, default=15)
    ap.add_argument("--wikiqa-queries", type=int, default=120)
    ap.add_argument("--paths", default="bfloat16,int8")
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
    scorers = make_scorers(paths)
    names = list(scorers)
    for s in scorers.values():
        s.score("warm up", ["a short text", "another one"])  # type: ignore[attr-defined]
    data = datasets(args.cranfield_queries, args.wikiqa_queries)
    results: dict = {"uptime_start": started, "threads": args.threads, "gate": GATE, "datasets": {}}
    for dname, (calls, qrels) in data.items():
        runs: dict[str, dict[str, dict[str, float]]] = {n: {} for n in names}
        seconds = {n: 0.0 for n in names}
        taus: dict[str, list[float]] = {n: [] for n in names if n != "float32"}
        for qid, q, ids, texts in calls:
            raw = {}
            for n in names:  # round-robin over the paths, query by query
                start = time.perf_counter()
                raw[n] = scorers[n].score(q, texts).raw  # type: ignore[attr-defined]
                seconds[n] += time.perf_counter() - start
                runs[n][qid] = {d: float(r) for d, r in zip(ids, raw[n], strict=False)}
            for n in taus:
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
                    "passes": bool(abs(d) <= GATE),
                    "kendall_tau_mean": statistics.fmean(taus[n]),
                    "kendall_tau_median": statistics.median(taus[n]),
                    "kendall_tau_min": min(taus[n]),
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
        f"threads={r['threads']}; load at start: {r['uptime_start'].split('load average: ')[-1]}; "
        f"at end: {r['uptime_end'].split('load average: ')[-1]}",
        "",
        "| dataset | path | NDCG@10 | ΔNDCG@10 vs fp32 | MAP | MRR@10 | Kendall tau mean / median / min "
        "| pairs/s | speed vs fp32 | gate |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for d, block in r["datasets"].items():
        for n, row in block["paths"].items():
            if n == "float32":
                extra, tau, gate = "(reference)", "1 / 1 / 1", ""
            else:
                extra = f"{row['delta_ndcg@10']:+.4f}"
                tau = f"{row['kendall_tau_mean']:.3f} / {row['kendall_tau_median']:.3f} / {row['kendall_tau_min']:.3f}"
                gate = "pass" if row["passes"] else "FAIL"
            lines.append(
                f"| {d} ({block['queries']} q, {block['pairs']} pairs) | {n} | {row['ndcg@10']:.4f} | {extra} | "
                f"{row['map']:.4f} | {row['mrr@10']:.4f} | {tau} | {row['pairs_per_s']:.1f} | "
                f"{row['speedup']:.2f}x | {gate} |"
            )
    lines.append("")
    lines.append("verdict: " + ", ".join(f"{n}: {'passes' if ok else 'fails'}" for n, ok in r["verdict"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
