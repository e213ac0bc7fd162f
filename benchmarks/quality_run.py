"""Run the quality table of benchmarks/quality.md: BM25 top 100 -> rerank, per dataset.

Each row is one ``ce-rerank eval`` command (printed before it runs); its output folder keeps
metrics.json, the two TREC runs, per_query.tsv and the per-query NDCG@10 plot. Then
``python benchmarks/quality_run.py --table`` prints the markdown table from those folders.

Usage (from the repository root, with ../shared present):

    OMP_NUM_THREADS=1 python benchmarks/quality_run.py [--out /tmp/quality] [DATASET[:MAX_QUERIES] ...]
    python benchmarks/quality_run.py --table [--out /tmp/quality]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
MODEL = SHARED / "models" / "wikiqa-minilm-ce"
DEFAULT = ["cranfield", "cisi", "medline", "cacm", "npl", "lisa", "wikiqa", "wikiqa-candidates"]
CANDIDATES = "wikiqa-candidates"


def candidates_run(out: Path) -> Path:
    """WikiQA's standard reranking task as a TREC run: each question's own candidate sentences,
    in the order the dataset lists them (score = minus the position)."""
    run = out / "wikiqa-candidates.run"
    lines = (SHARED / "data" / "wikiqa" / "candidates_test.tsv").read_text().splitlines()[1:]
    position: dict[str, int] = {}
    with run.open("w") as fh:
        for line in lines:
            qid, did, _label = line.split("\t")
            position[qid] = position.get(qid, 0) + 1
            fh.write(f"{qid} Q0 {did} {position[qid]} {-position[qid]} candidates\n")
    return run


def command(name: str, max_queries: int | None, out: Path) -> list[str]:
    """The command for a row; ``NAME+rrf`` fuses BM25's order with the cross-encoder's (--fusion rrf)."""
    dataset, _, fusion = name.partition("+")
    first_stage = "bm25"
    if dataset == CANDIDATES:
        first_stage = f"run:{candidates_run(out)}"
    cmd = [
        "ce-rerank",
        "eval",
        f"../shared/data/{dataset.split('-')[0]}",
        "--model",
        "../shared/models/wikiqa-minilm-ce",
        "--first-stage",
        first_stage,
        "--top-n",
        "100",
        "--dtype",
        "bfloat16",
        "--output",
        str(out / name),
        "--no-progress",
    ]
    if fusion:
        cmd += ["--fusion", fusion]
    if max_queries is not None:
        cmd += ["--max-queries", str(max_queries)]
    return cmd


def run(specs: list[str], out: Path, wait_for: int | None = None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    while wait_for is not None and Path(f"/proc/{wait_for}").exists():  # one job at a time on a shared CPU
        time.sleep(5)
    for spec in specs:
        name, _, n = spec.partition(":")
        cmd = command(name, int(n) if n else None, out)
        (out / f"{name}.cmd").write_text(shlex.join(cmd) + "\n")
        print("$", shlex.join(cmd), flush=True)
        start = time.perf_counter()
        # `python -m ce_rerank` is the console script without needing it installed.
        subprocess.run([sys.executable, "-m", "ce_rerank", *cmd[1:]], cwd=ROOT, check=True)
        seconds = time.perf_counter() - start
        (out / name / "seconds.txt").write_text(f"{seconds:.0f}\n")
        print(f"{name}: {seconds:.0f} s", flush=True)


def table(out: Path) -> str:
    rows = [
        "| dataset | first stage | queries | NDCG@10 before | NDCG@10 after | MRR@10 before | MRR@10 after | "
        "Recall@100 before | Recall@100 after | MAP before | MAP after | NDCG@10 per query better / worse / same "
        "| seconds |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    commands = []
    names = [n for d in DEFAULT for n in (d, f"{d}+rrf")]
    for name in names:
        f = out / name / "metrics.json"
        if not f.exists():
            continue
        m = json.loads(f.read_text())
        b, a = m["first_stage"], m["reranked"]
        better = worse = same = 0
        for line in (out / name / "per_query.tsv").read_text().splitlines()[1:]:
            d = float(line.split("\t")[-1])
            better += d > 1e-12
            worse += d < -1e-12
            same += abs(d) <= 1e-12
        stage = "candidates" if name.startswith(CANDIDATES) else "BM25 top 100"
        if name.endswith("+rrf"):
            stage += ", RRF with the reranker"
        secs = (out / name / "seconds.txt").read_text().strip() if (out / name / "seconds.txt").exists() else "?"
        rows.append(
            f"| {name} | {stage} | {m['queries']} | {b['ndcg@10']:.4f} | {a['ndcg@10']:.4f} | {b['mrr@10']:.4f} | "
            f"{a['mrr@10']:.4f} | {b['recall@100']:.4f} | {a['recall@100']:.4f} | {b['map']:.4f} | {a['map']:.4f} | "
            f"{better} / {worse} / {same} | {secs} |"
        )
        commands.append(f"- {name}: `{(out / f'{name}.cmd').read_text().strip()}`")
    return "\n".join(rows) + "\n\nCommands:\n\n" + "\n".join(commands) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("specs", nargs="*", default=DEFAULT, help="DATASET or DATASET:MAX_QUERIES")
    parser.add_argument("--out", type=Path, default=Path("/tmp/quality"))
    parser.add_argument("--table", action="store_true", help="print the markdown table of finished runs")
    parser.add_argument("--wait-for", type=int, help="start after this process id has ended")
    args = parser.parse_args()
    if args.table:
        print(table(args.out))
    else:
        run(args.specs, args.out, args.wait_for)


if __name__ == "__main__":
    main()
