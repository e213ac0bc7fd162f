"""Adapt a reranker to the user's domain, checked on held-out queries: ``ce-rerank finetune`` from Python.

From a BEIR-layout dataset and the user's own first stage (BM25, a dense model or a run file):

1. the split (:func:`split_queries`): training queries from ``qrels/train.tsv`` when there is one,
   else a seeded hold-out of the judged queries; no evaluation query is ever trained on;
2. training pairs (:func:`mine_pairs`): judged positives, hard negatives from the first stage's
   best candidates, never a judged positive, likely false negatives filtered by the base
   reranker, long documents cut into the windows the scorer uses;
3. without judgments, questions written by a local LLM through Ollama (:func:`generate_queries`);
   and, where the documents have titles (or short first sentences), those as label-free queries
   (``finetune(title_queries=N)``);
4. training with sentence-transformers' ``CrossEncoderTrainer`` (:func:`train_cross_encoder`; binary
   cross-entropy on each pair, ``loss="lambda"``: the listwise ``LambdaLoss`` over each query's documents, or
   ``loss="distill"``: ``MSELoss`` toward the first stage fused with the base, for every candidate), keeping
   the step that does best on dev queries taken from the training side, the base included
   (:class:`BestStep`, :func:`build_dev_set`);
5. the gate (:func:`run_gate`): first stage, base and tuned on the held-out queries, a paired
   test, and a verdict; the model is saved either way, ``passed`` says whether to ship it;
6. with ``fusion="rrf"``, each reranker also fused with the first stage, at RRF weights chosen on the
   judged queries it was not trained on (:func:`choose_rrf_weights`) or given.

Needs ``pip install 'ce-rerank[train]'``.

Example:
    >>> from ce_rerank.finetune import finetune
    >>> result = finetune("my-data/", model="cross-encoder/ms-marco-MiniLM-L-6-v2", output="tuned/")  # doctest: +SKIP
    >>> result.passed, result.report["tuned"]["ndcg@10"]  # doctest: +SKIP
    (True, 0.41)
"""

from __future__ import annotations

from ._checks import check_output
from ._fusion import FusionChoice, choose_rrf_weights
from ._gate import GATE_METRIC, GateResult, run_gate
from ._generate import (
    CONSISTENCY_TOP,
    GeneratedQueries,
    OllamaQueryGenerator,
    QueryGenerationError,
    build_prompt,
    consistency_filter,
    generate_queries,
)
from ._pairs import TrainingPairs, mine_pairs
from ._run import FinetuneResult, finetune
from ._select import DEV_METRIC, DEV_SIGNIFICANCE, MIN_DEV_QUERIES, BestStep, DevSet, build_dev_set
from ._split import MIN_EVAL_QUERIES, MIN_TRAIN_QUERIES, QuerySplit, holdout_split, split_queries
from ._train import TrainingResult, train_cross_encoder

__all__ = [
    "CONSISTENCY_TOP",
    "DEV_METRIC",
    "DEV_SIGNIFICANCE",
    "GATE_METRIC",
    "MIN_DEV_QUERIES",
    "MIN_EVAL_QUERIES",
    "MIN_TRAIN_QUERIES",
    "BestStep",
    "DevSet",
    "FinetuneResult",
    "FusionChoice",
    "GateResult",
    "GeneratedQueries",
    "OllamaQueryGenerator",
    "QueryGenerationError",
    "QuerySplit",
    "TrainingPairs",
    "TrainingResult",
    "build_dev_set",
    "build_prompt",
    "check_output",
    "choose_rrf_weights",
    "consistency_filter",
    "finetune",
    "generate_queries",
    "holdout_split",
    "mine_pairs",
    "run_gate",
    "split_queries",
    "train_cross_encoder",
]
