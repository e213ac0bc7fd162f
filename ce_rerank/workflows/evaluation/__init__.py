"""Measure what reranking buys on a BEIR-layout dataset: first stage, rerank, metrics before and after.

A dataset directory holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/test.tsv`` (``query-id``, ``corpus-id``, ``score``): the layout
that ``beir``, ``ir_datasets`` exports and ``mteb`` read.

The pipeline: a first stage (BM25, a dense retriever, or a TREC run file) retrieves
``max(candidates, 100)`` documents per judged query; a scorer reranks the first ``candidates``;
NDCG@10, MRR@10, Recall@100 and MAP are computed for both runs by ``pytrec_eval`` (the
reference ``trec_eval`` code), with per-query values so that you see where reranking helps
and where it hurts.

The optional dependencies (bm25s, pytrec-eval-terrier, matplotlib, rich) come with
``pip install 'ce-rerank[eval]'``; they are imported only when a function needs them.

Example:
    >>> from ce_rerank import CrossEncoderScorer
    >>> from ce_rerank.evaluation import evaluate_reranking, load_beir
    >>> data = load_beir("ce_rerank/data/demo")  # doctest: +SKIP
    >>> result = evaluate_reranking(data, CrossEncoderScorer("path/to/model"), candidates=20)  # doctest: +SKIP
    >>> result.metrics()  # doctest: +SKIP
    {'first_stage': {'ndcg@10': 0.61, ...}, 'reranked': {'ndcg@10': 0.83, ...}, 'queries': 7, ...}
    >>> print(result.metrics_json())  # the same, as the JSON text of metrics.json  # doctest: +SKIP
"""

from __future__ import annotations

from ._data import MIN_DEPTH, Dataset, DatasetError, Run, doc_text, load_beir, ranked_ids, read_trec_run, write_trec_run
from ._first_stage import bm25_run, dense_run, first_stage_run
from ._metrics import METRICS, evaluate_run
from ._pipeline import (
    OUTPUT_FILES,
    EvaluationResult,
    QueryResult,
    check_output_dir,
    evaluate_reranking,
    plot_per_query,
    rerank_run,
)

__all__ = [
    "METRICS",
    "MIN_DEPTH",
    "OUTPUT_FILES",
    "Dataset",
    "DatasetError",
    "EvaluationResult",
    "QueryResult",
    "Run",
    "bm25_run",
    "check_output_dir",
    "dense_run",
    "doc_text",
    "evaluate_reranking",
    "evaluate_run",
    "first_stage_run",
    "load_beir",
    "plot_per_query",
    "ranked_ids",
    "read_trec_run",
    "rerank_run",
    "write_trec_run",
]
