"""WikiQA with its training split, in the BEIR layout that ``ce-rerank finetune`` reads.

``../shared/data/wikiqa`` holds the test split in BEIR layout and the training split only as
``train_pairs.tsv`` (question text, sentence text, 0/1 label; no ids, no titles). This writes
one folder with both, so that ``finetune`` takes its training queries from ``qrels/train.tsv``
and evaluates on ``qrels/test.tsv``:

    python benchmarks/wikiqa_train.py /tmp/wikiqa-train [--train-queries N [--sample-seed S]]
    ce-rerank finetune /tmp/wikiqa-train --model ../shared/models/general-minilm-ce \\
        --first-stage run:/tmp/wikiqa-train/candidates.run --candidates 30 --output /tmp/ft-wikiqa

- corpus: the test sentences (ids as in ../shared) and the training sentences (``T<q>-<n>``),
  all **without titles**, because the training rows have none (training and evaluation then see
  the same kind of text);
- ``--train-queries N`` keeps N of the answered training questions in ``qrels/train.tsv``
  (``random.Random(S).sample`` over their sorted ids, ``--sample-seed S``, default 13; corpus,
  queries, test split and candidates unchanged), to train on as few judged queries as a classic
  collection has (finetune.md, rounds 8 and 10);
- queries: the test questions and the training questions (``TQ<q>``);
- ``candidates.run``: each question's own candidate sentences in the dataset's order (the
  standard WikiQA reranking task), for ``--first-stage run:FILE``; training negatives are then
  the question's own non-answers, as in the dataset.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import shutil
from pathlib import Path

SOURCE = Path(__file__).resolve().parents[2] / "shared" / "data" / "wikiqa"


def main(out: Path, train_queries: int | None = None, sample_seed: int = 13) -> None:
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    shutil.copy(SOURCE / "qrels" / "test.tsv", out / "qrels" / "test.tsv")
    corpus = [json.loads(line) for line in (SOURCE / "corpus.jsonl").open()]
    queries = [json.loads(line) for line in (SOURCE / "queries.jsonl").open()]
    test_text = {q["text"].strip().lower() for q in queries}
    run: list[str] = []
    position: dict[str, int] = {}
    with (SOURCE / "candidates_test.tsv").open() as fh:
        for row in csv.DictReader(fh, delimiter="\t"):
            qid = row["query-id"]
            position[qid] = position.get(qid, 0) + 1
            run.append(f"{qid} Q0 {row['corpus-id']} {position[qid]} {-position[qid]} candidates")
    train_ids: dict[str, str] = {}
    qrels: list[str] = []
    with (SOURCE / "train_pairs.tsv").open() as fh:
        for row in csv.DictReader(fh, delimiter="\t", quoting=csv.QUOTE_NONE):
            question = row["query"]
            if question.strip().lower() in test_text:
                raise SystemExit(f"training question also in the test split: {question!r}")
            qid = train_ids.setdefault(question, f"TQ{len(train_ids)}")
            position[qid] = position.get(qid, 0) + 1
            did = f"T{qid[2:]}-{position[qid]}"
            corpus.append({"_id": did, "title": "", "text": row["passage"]})
            run.append(f"{qid} Q0 {did} {position[qid]} {-position[qid]} candidates")
            if row["label"] == "1":
                qrels.append(f"{qid}\t{did}\t1")
    if train_queries is not None:
        answered = sorted({line.split("\t")[0] for line in qrels})
        if not 0 < train_queries <= len(answered):
            raise SystemExit(f"--train-queries must be 1-{len(answered)} (the answered training questions)")
        kept = set(random.Random(sample_seed).sample(answered, train_queries))
        qrels = [line for line in qrels if line.split("\t")[0] in kept]
    queries += [{"_id": qid, "text": text} for text, qid in train_ids.items()]
    with (out / "corpus.jsonl").open("w") as fh:
        for doc in corpus:
            fh.write(json.dumps({"_id": doc["_id"], "title": "", "text": doc["text"]}) + "\n")
    with (out / "queries.jsonl").open("w") as fh:
        for query in queries:
            fh.write(json.dumps(query) + "\n")
    (out / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\n" + "\n".join(qrels) + "\n")
    (out / "candidates.run").write_text("\n".join(run) + "\n")
    judged = len({line.split("\t")[0] for line in qrels})
    print(f"{out}: {len(corpus)} sentences, {len(train_ids)} training questions ({judged} with an answer)")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="WikiQA with its training split, in BEIR layout")
    ap.add_argument("out", type=Path, metavar="OUT_DIR")
    ap.add_argument("--train-queries", type=int, default=None, metavar="N", help="keep N answered training questions")
    ap.add_argument("--sample-seed", type=int, default=13, metavar="S", help="seed of that sample (default 13)")
    args = ap.parse_args()
    main(args.out, args.train_queries, args.sample_seed)
