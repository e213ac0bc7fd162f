"""Would the dev test (``--dev-significance``) have kept the step a finished ``ce-rerank finetune`` run saved?

For each output folder: the run's dev queries (``report.json``) and their first-stage candidates
are rebuilt as ``finetune`` builds them (``build_dev_set``), scored with the base model and with
the saved model (the best dev step) by finetune's own dev evaluation (``model_scorer``, float32),
and compared query by query (per-query NDCG@10, the paired t-test of ``--dev-significance``),
beside the held-out change the gate measured. Runs made before the dev queries were cut to the
query budget (commit 31709bf) can differ slightly from their logged dev curve on sets with long
queries (CISI).

    python benchmarks/dev_retro.py /tmp/ft/npl /tmp/ft/medline ... [--data ../shared/data] [--wikiqa /tmp/wikiqa-train]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import _workloads as W
from sentence_transformers.cross_encoder import CrossEncoder

from ce_rerank import CrossEncoderScorer
from ce_rerank.workflows.evaluation._data import load_beir
from ce_rerank.workflows.evaluation._first_stage import first_stage_run
from ce_rerank.workflows.evaluation._significance import paired_comparison
from ce_rerank.workflows.finetune import DEV_SIGNIFICANCE, build_dev_set
from ce_rerank.workflows.finetune._select import model_scorer


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="finetune output folders")
    ap.add_argument("--data", default=str(W.DATA), help="where the BEIR collections are")
    ap.add_argument("--wikiqa", default="/tmp/wikiqa-train", help="benchmarks/wikiqa_train.py's output")
    args = ap.parse_args()
    print(
        "| run | dev queries | dev NDCG@10: base -> saved step (change; better / worse / same) | paired t-test p | "
        f"kept at p <= {DEV_SIGNIFICANCE} | held-out: tuned - base |"
    )
    print("|---|---|---|---|---|---|")
    for out in args.runs:
        r = json.loads((Path(out) / "report.json").read_text())
        wikiqa = r["dataset"].startswith("wikiqa")
        data = load_beir(args.wikiqa if wikiqa else f"{args.data}/{r['dataset']}", split="train" if wikiqa else "test")
        spec = f"run:{args.wikiqa}/candidates.run" if wikiqa else "bm25"
        _, run = first_stage_run(data, spec, top_k=100)
        model = r["model"] if Path(r["model"]).is_absolute() else str(W.ROOT / r["model"])  # as run from the repo
        base = CrossEncoderScorer(model if Path(model).exists() else r["model"], dtype="float32")
        dev = build_dev_set(data, run, r["dev_queries"], base, depth=r["candidates"])
        per = {}
        for name, path in (("base", base.model_name), ("saved", f"{out}/model")):  # as finetune's dev evaluation
            _, per[name] = dev.ndcg(model_scorer(CrossEncoder(path, device="cpu"), dev, bf16=False)())
        c = paired_comparison(per["base"], per["saved"], query_ids=dev.query_ids)
        kept = c.delta > 0 and c.p_value <= DEV_SIGNIFICANCE
        held = r["tuned"]["ndcg@10"] - r["base"]["ndcg@10"]
        print(
            f"| {out} ({r['training']['dev']['kept']}) | {c.queries} | {c.mean_a:.4f} -> {c.mean_b:.4f} "
            f"({c.delta:+.4f}; {c.better} / {c.worse} / {c.same}) | {c.p_value:.3f} | "
            f"{'step' if kept else 'base'} | {held:+.4f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
