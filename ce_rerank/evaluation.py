"""Measure what reranking buys on a BEIR-layout dataset: first stage, rerank, metrics before and after.

A dataset directory holds ``corpus.jsonl`` (``_id``, ``title``, ``text``), ``queries.jsonl``
(``_id``, ``text``) and ``qrels/test.tsv`` (``query-id``, ``corpus-id``, ``score``): the layout
that ``beir``, ``ir_datasets`` exports and ``mteb`` read.

The pipeline: a first stage (BM25, a dense retriever, or a TREC run file) retrieves
``max(top_n, 100)`` candidates per judged query; a scorer reranks the first ``top_n`` of them;
NDCG@10, MRR@10, Recall@100 and MAP are computed for both runs by ``pytrec_eval`` (the
reference ``trec_eval`` code), with per-query values so that you see where reranking helps
and where it hurts.

The optional dependencies (bm25s, pytrec-eval-terrier, matplotlib, rich) come with
``pip install 'ce-rerank[eval]'``; they are imported only when a function needs them.

Example:
    >>> from ce_rerank import CrossEncoderScorer
    >>> from ce_rerank.evaluation import evaluate_reranking, load_beir
    >>> data = load_beir("ce_rerank/data/demo")  # doctest: +SKIP
    >>> result = evaluate_reranking(data, CrossEncoderScorer("path/to/model"), top_n=20)  # doctest: +SKIP
    >>> result.metrics_json()  # doctest: +SKIP
    {'first_stage': {'ndcg@10': 0.61, ...}, 'reranked': {'ndcg@10': 0.83, ...}, 'queries': 7, ...}
"""

from __future__ import annotations

import csv
import importlib
import json
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ._ranking import RankedCandidate
from ._reranker import Reranker
from ._scores import Scorer
from .exceptions import CeRerankError

__all__ = [
    "METRICS",
    "Dataset",
    "DatasetError",
    "EvaluationResult",
    "QueryResult",
    "Run",
    "bm25_run",
    "dense_run",
    "doc_text",
    "evaluate_reranking",
    "evaluate_run",
    "first_stage_run",
    "load_beir",
    "plot_per_query",
    "read_trec_run",
    "rerank_run",
    "write_trec_run",
]

EXTRA = "ce-rerank[eval]"

#: The metrics reported, in this order (names as in metrics.json).
METRICS: tuple[str, ...] = ("ndcg@10", "mrr@10", "recall@100", "map")

#: query id -> document id -> score (higher is better), the shape pytrec_eval and TREC run files use.
Run = dict[str, dict[str, float]]

#: Depth of every first-stage run: Recall@100 needs 100 candidates even when fewer are reranked.
MIN_DEPTH = 100


class DatasetError(CeRerankError, ValueError):
    """A dataset directory, run file or documents file is missing or malformed.

    The message names the file (and the line, where there is one) and what to fix.
    """


def _require(module: str, purpose: str) -> ModuleType:
    """Import an optional dependency, or raise ImportError naming the extra to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        package = {"pytrec_eval": "pytrec-eval-terrier"}.get(module, module)
        raise ImportError(f"{purpose} needs the optional package {package!r}: pip install '{EXTRA}'") from exc


# -- loading ---------------------------------------------------------------------------------


def doc_text(title: str | None, text: str | None) -> str:
    """The text a document is retrieved and reranked by: ``title + " " + text``, as BEIR does.

    A title that the text already starts with (Cranfield repeats it) is not doubled.
    """
    title = (title or "").strip()
    text = (text or "").strip()
    if not title or text.startswith(title):
        return text
    return f"{title} {text}".strip()


def _read_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{path} line {lineno}: not valid JSON ({exc.msg}, column {exc.colno})") from exc
            if not isinstance(obj, dict) or "_id" not in obj:
                raise DatasetError(f"{path} line {lineno}: expected a JSON object with an '_id' field")
            yield lineno, obj


def _read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with path.open(encoding="utf-8", newline="") as fh:
        for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), start=1):
            if not row or not "".join(row).strip():
                continue
            if lineno == 1 and row[0].strip() == "query-id":
                continue
            if len(row) != 3:
                raise DatasetError(
                    f"{path} line {lineno}: expected 3 tab-separated fields (query-id, corpus-id, score), "
                    f"got {len(row)}"
                )
            qid, did, score = (x.strip() for x in row)
            try:
                grade = int(float(score))
            except ValueError as exc:
                raise DatasetError(f"{path} line {lineno}: score {score!r} is not a number") from exc
            qrels.setdefault(qid, {})[did] = grade
    return qrels


@dataclass(frozen=True)
class Dataset:
    """A BEIR-layout test collection held in memory.

    Attributes:
        name: the directory's name.
        corpus: document id -> text to retrieve and rerank by (see :func:`doc_text`).
        queries: query id -> query text, every query of ``queries.jsonl``.
        qrels: query id -> document id -> relevance grade (>= 1 is relevant).
    """

    name: str
    corpus: dict[str, str]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]

    @property
    def judged_queries(self) -> list[str]:
        """Ids of the queries that have at least one relevant document, in ``queries.jsonl`` order.

        These are the queries evaluated (queries without judgments say nothing about quality).
        """
        return [q for q in self.queries if any(g >= 1 for g in self.qrels.get(q, {}).values())]

    def subset(self, max_queries: int | None) -> Dataset:
        """The same dataset restricted to its first ``max_queries`` judged queries (file order)."""
        if max_queries is None:
            return self
        if isinstance(max_queries, bool) or not isinstance(max_queries, int) or max_queries < 1:
            raise ValueError(f"max_queries must be an integer >= 1 or None (all), got {max_queries!r}")
        keep = self.judged_queries[:max_queries]
        return Dataset(
            name=self.name,
            corpus=self.corpus,
            queries={q: self.queries[q] for q in keep},
            qrels={q: self.qrels[q] for q in keep},
        )


def load_beir(path: str | os.PathLike[str], *, split: str = "test") -> Dataset:
    """Load a BEIR-layout dataset directory.

    Raises:
        DatasetError: a file is missing or malformed, or no judged query has a text.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise DatasetError(
            f"dataset directory {str(root)!r} does not exist: give a folder with corpus.jsonl, queries.jsonl "
            f"and qrels/{split}.tsv (the BEIR layout)"
        )
    files = {
        "corpus": root / "corpus.jsonl",
        "queries": root / "queries.jsonl",
        "qrels": root / "qrels" / f"{split}.tsv",
    }
    for label, f in files.items():
        if not f.is_file():
            raise DatasetError(f"{root} has no {f.relative_to(root)}: a BEIR-layout dataset needs it ({label})")
    corpus: dict[str, str] = {}
    for _, obj in _read_jsonl(files["corpus"]):
        corpus[str(obj["_id"])] = doc_text(obj.get("title"), obj.get("text"))
    queries: dict[str, str] = {}
    for lineno, obj in _read_jsonl(files["queries"]):
        text = obj.get("text")
        if not isinstance(text, str):
            raise DatasetError(f"{files['queries']} line {lineno}: expected a string 'text' field")
        queries[str(obj["_id"])] = text
    qrels = _read_qrels(files["qrels"])
    data = Dataset(name=root.resolve().name, corpus=corpus, queries=queries, qrels=qrels)
    if not corpus:
        raise DatasetError(f"{files['corpus']} holds no documents")
    if not data.judged_queries:
        raise DatasetError(
            f"no query of {files['queries']} has a relevant document in {files['qrels']}: check that the "
            "query ids match"
        )
    return data


# -- runs ------------------------------------------------------------------------------------


def ranked_ids(scores: dict[str, float]) -> list[str]:
    """Document ids best first, ties broken as ``trec_eval`` breaks them (document id, descending)."""
    return sorted(scores, key=lambda d: (scores[d], d), reverse=True)


def read_trec_run(path: str | os.PathLike[str]) -> Run:
    """Read a TREC run file: ``query-id Q0 doc-id rank score tag`` per line (whitespace separated)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise DatasetError(f"run file {str(p)!r} does not exist")
    run: Run = {}
    with p.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            fields = line.split()
            if len(fields) != 6:
                raise DatasetError(
                    f"{p} line {lineno}: a TREC run line has 6 fields (query-id Q0 doc-id rank score tag), "
                    f"got {len(fields)}"
                )
            try:
                score = float(fields[4])
            except ValueError as exc:
                raise DatasetError(f"{p} line {lineno}: score {fields[4]!r} is not a number") from exc
            run.setdefault(fields[0], {})[fields[2]] = score
    if not run:
        raise DatasetError(f"run file {p} is empty")
    return run


def write_trec_run(run: Run, path: str | os.PathLike[str], *, tag: str) -> None:
    """Write a run as a TREC run file (ranks from 1, best first)."""
    tag = "_".join(tag.split()) or "run"
    with Path(path).open("w", encoding="utf-8") as fh:
        for qid, scores in run.items():
            for rank, did in enumerate(ranked_ids(scores), start=1):
                fh.write(f"{qid} Q0 {did} {rank} {scores[did]:.6f} {tag}\n")


def _cut(run: Run, depth: int) -> Run:
    return {q: {d: s[d] for d in ranked_ids(s)[:depth]} for q, s in run.items()}


def bm25_run(
    dataset: Dataset,
    *,
    top_k: int = 100,
    query_ids: Sequence[str] | None = None,
    stopwords: str | list[str] | None = "en",
) -> Run:
    """BM25 (``bm25s``, Lucene variant, k1=1.5, b=0.75) over the corpus: the ``top_k`` best per query.

    Documents sharing no term with the query (score 0) are not retrieved.
    """
    bm25s = _require("bm25s", "the BM25 first stage")
    from bm25s.tokenization import Tokenizer

    qids = list(query_ids) if query_ids is not None else dataset.judged_queries
    doc_ids = list(dataset.corpus)
    tokenizer = Tokenizer(stopwords=stopwords or [])
    corpus_tokens = tokenizer.tokenize([dataset.corpus[d] for d in doc_ids], return_as="ids", show_progress=False)
    retriever = bm25s.BM25()
    retriever.index(corpus_tokens, show_progress=False)
    query_tokens = tokenizer.tokenize(
        [dataset.queries[q] for q in qids], return_as="ids", update_vocab=False, show_progress=False
    )
    k = min(top_k, len(doc_ids))
    docs, scores = retriever.retrieve(query_tokens, k=k, show_progress=False)
    run: Run = {}
    for row, qid in enumerate(qids):
        run[qid] = {doc_ids[int(i)]: float(s) for i, s in zip(docs[row], scores[row], strict=True) if s > 0}
    return run


def _embedder(model: Any) -> tuple[Callable[[list[str]], Any], Callable[[list[str]], Any], str]:
    """(embed documents, embed queries, name) for a model id/path or an embeddings object."""
    if isinstance(model, (str, os.PathLike)):
        from sentence_transformers import SentenceTransformer

        try:
            model = SentenceTransformer(str(model))
        except Exception as exc:
            raise ValueError(
                f"could not load the dense retriever {str(model)!r} with sentence-transformers "
                f"({type(exc).__name__}): give a local sentence-transformers model directory or a reachable hub id"
            ) from exc
    name = str(getattr(model, "model_name", None) or getattr(model, "model", None) or type(model).__name__)
    if hasattr(model, "embed_documents") and hasattr(model, "embed_query"):  # LangChain Embeddings
        return model.embed_documents, lambda qs: [model.embed_query(q) for q in qs], name
    if hasattr(model, "get_text_embedding_batch") and hasattr(model, "get_query_embedding"):  # LlamaIndex
        return model.get_text_embedding_batch, lambda qs: [model.get_query_embedding(q) for q in qs], name
    if hasattr(model, "encode"):  # sentence-transformers SentenceTransformer
        encode_query = getattr(model, "encode_query", model.encode)
        encode_document = getattr(model, "encode_document", model.encode)
        return (
            lambda ts: encode_document(ts, convert_to_numpy=True, show_progress_bar=False),
            lambda qs: encode_query(qs, convert_to_numpy=True, show_progress_bar=False),
            name,
        )
    raise TypeError(
        "the dense retriever must be a sentence-transformers model (id, path or SentenceTransformer), "
        f"LangChain Embeddings or a LlamaIndex embedding model, got {type(model).__name__}"
    )


def dense_run(
    dataset: Dataset,
    model: Any,
    *,
    top_k: int = 100,
    query_ids: Sequence[str] | None = None,
) -> Run:
    """Exact cosine-similarity search over the whole corpus with an embedding model.

    Args:
        dataset: the collection.
        model: a sentence-transformers model id or directory, a ``SentenceTransformer``, a
            LangChain ``Embeddings`` or a LlamaIndex embedding model.
        top_k: documents kept per query.
        query_ids: the queries to run (default: the judged ones).
    """
    import torch

    embed_docs, embed_queries, _ = _embedder(model)
    qids = list(query_ids) if query_ids is not None else dataset.judged_queries
    doc_ids = list(dataset.corpus)
    docs = torch.nn.functional.normalize(
        torch.as_tensor(embed_docs([dataset.corpus[d] for d in doc_ids])).float(), dim=-1
    )
    queries = torch.nn.functional.normalize(
        torch.as_tensor(embed_queries([dataset.queries[q] for q in qids])).float(), dim=-1
    )
    sims = queries @ docs.T
    values, indices = sims.topk(min(top_k, len(doc_ids)), dim=1)
    return {
        qid: {doc_ids[i]: float(v) for i, v in zip(indices[row].tolist(), values[row].tolist(), strict=True)}
        for row, qid in enumerate(qids)
    }


def first_stage_run(dataset: Dataset, spec: str, *, top_k: int = MIN_DEPTH) -> tuple[str, Run]:
    """Run the first stage named by ``spec``: ``bm25``, ``dense:MODEL`` or ``run:FILE``.

    Returns ``(label, run)``; the run holds the ``top_k`` best documents of each judged query.
    """
    kind, _, arg = spec.partition(":")
    if kind == "bm25" and not arg:
        return "bm25", bm25_run(dataset, top_k=top_k)
    if kind == "dense" and arg:
        return f"dense:{arg}", dense_run(dataset, arg, top_k=top_k)
    if kind == "run" and arg:
        run = read_trec_run(arg)
        judged = set(dataset.judged_queries)
        if not judged & set(run):
            raise DatasetError(
                f"run file {arg!r} has no query of {dataset.name!r}'s qrels: check that the query ids match"
            )
        return f"run:{Path(arg).name}", _cut({q: s for q, s in run.items() if q in judged}, top_k)
    raise ValueError(
        f"unknown first stage {spec!r}: use 'bm25', 'dense:MODEL' (a sentence-transformers model) "
        "or 'run:FILE' (a TREC run file)"
    )


# -- reranking -------------------------------------------------------------------------------


def _progress() -> Any:
    rich_progress = _require("rich.progress", "the progress bar")
    from rich.console import Console

    return rich_progress.Progress(
        rich_progress.TextColumn("{task.description}"),
        rich_progress.BarColumn(),
        rich_progress.MofNCompleteColumn(),
        rich_progress.TimeElapsedColumn(),
        rich_progress.TextColumn("eta"),
        rich_progress.TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )


def rerank_run(
    dataset: Dataset,
    run: Run,
    scorer: Scorer | Reranker,
    *,
    top_n: int = 100,
    progress: bool = False,
) -> Run:
    """Rerank the ``top_n`` best documents of each query of ``run``; the rest keep their order below.

    Args:
        dataset: supplies query and document texts.
        run: the first-stage run.
        scorer: a :class:`~ce_rerank.Scorer` (reranked with ``Reranker(scorer, top_n=None)``) or a
            ready :class:`~ce_rerank.Reranker` (candidates it drops follow the ones it keeps, in
            first-stage order).
        top_n: how many candidates per query go to the scorer.
        progress: show a progress bar on stderr (needs ``rich``).

    Returns:
        A run whose scores order each query's documents: the reranked candidates carry the
        scorer's raw score (the fusion score when the reranker fuses), the rest lower scores in
        first-stage order.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"top_n must be an integer >= 1, got {top_n!r}")
    reranker = scorer if isinstance(scorer, Reranker) else Reranker(scorer, top_n=None)
    missing = sorted({d for s in run.values() for d in s if d not in dataset.corpus})
    if missing:
        raise DatasetError(
            f"the run names {len(missing)} document(s) that are not in the corpus, e.g. {missing[0]!r}: "
            "check that the run belongs to this dataset"
        )
    unknown = [q for q in run if q not in dataset.queries]
    if unknown:
        raise DatasetError(
            f"the run has {len(unknown)} query id(s) that are not in queries.jsonl, e.g. {unknown[0]!r}: "
            "check that the run belongs to this dataset"
        )
    out: Run = {}
    bar = _progress() if progress else None
    task = bar.add_task(f"reranking {dataset.name}", total=len(run)) if bar is not None else None
    if bar is not None:
        bar.start()
    try:
        for qid, scores in run.items():
            order = ranked_ids(scores)
            head, tail = order[:top_n], order[top_n:]
            ranked: list[RankedCandidate] = (
                reranker.rerank(dataset.queries[qid], [dataset.corpus[d] for d in head], ids=head) if head else []
            )
            kept = [c.index for c in ranked]
            kept_set = set(kept)
            rest = [i for i in range(len(head)) if i not in kept_set]
            new: dict[str, float] = {}
            # The score the reranker sorted by: the fused score with fusion on, else the raw logit.
            keys = [c.fusion_score if c.fusion_score is not None else c.ce_raw_score for c in ranked]
            if all(k is not None and math.isfinite(k) for k in keys):
                for c, k in zip(ranked, keys, strict=True):
                    new[head[c.index]] = float(k)  # type: ignore[arg-type]
                floor = min(new.values(), default=0.0)
            else:  # passthrough after a scoring error: no scores, keep the given order
                floor = 0.0
                for pos, i in enumerate(kept):
                    new[head[i]] = float(len(kept) - pos)
            below = [head[i] for i in rest] + tail
            for pos, did in enumerate(below, start=1):
                new[did] = floor - pos
            out[qid] = new
            if bar is not None:
                bar.advance(task)
    finally:
        if bar is not None:
            bar.stop()
    return out


# -- metrics ---------------------------------------------------------------------------------

# metric name -> (pytrec_eval measure, key in its answer, depth the run is cut to first)
_TREC_MEASURES: dict[str, tuple[str, str, int | None]] = {
    "ndcg@10": ("ndcg_cut.10", "ndcg_cut_10", None),
    # trec_eval's recip_rank has no cut-off: MRR@10 is recip_rank over the run cut to its 10 best.
    "mrr@10": ("recip_rank", "recip_rank", 10),
    "recall@100": ("recall.100", "recall_100", None),
    "map": ("map", "map", None),
}


def evaluate_run(
    qrels: dict[str, dict[str, int]],
    run: Run,
    *,
    query_ids: Sequence[str] | None = None,
    metrics: Sequence[str] = METRICS,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """NDCG@10, MRR@10, Recall@100 and MAP of ``run``, computed by ``pytrec_eval`` (``trec_eval``).

    Args:
        qrels: query id -> document id -> grade (>= 1 relevant; NDCG uses the grades as gains).
        run: query id -> document id -> score.
        query_ids: the queries to average over (default: every query of ``qrels`` with a relevant
            document). A query the run does not answer counts 0, as ``trec_eval -c`` counts it.
        metrics: a subset of :data:`METRICS`.

    Returns:
        ``(means, per_query)``: metric -> mean, and query id -> metric -> value.
    """
    pytrec_eval = _require("pytrec_eval", "computing metrics")
    unknown = [m for m in metrics if m not in _TREC_MEASURES]
    if unknown:
        raise ValueError(f"unknown metric(s) {unknown}: choose from {list(METRICS)}")
    qids = (
        list(query_ids)
        if query_ids is not None
        else [q for q, docs in qrels.items() if any(g >= 1 for g in docs.values())]
    )
    if not qids:
        raise ValueError("no query to evaluate: the qrels hold no relevant document")
    judged = {q: {d: int(g) for d, g in qrels.get(q, {}).items()} for q in qids}
    answered = {q: {d: float(s) for d, s in run.get(q, {}).items()} for q in qids if run.get(q)}
    per_query: dict[str, dict[str, float]] = {q: dict.fromkeys(metrics, 0.0) for q in qids}
    by_depth: dict[int | None, list[str]] = {}
    for m in metrics:
        by_depth.setdefault(_TREC_MEASURES[m][2], []).append(m)
    for depth, names in by_depth.items():
        cut = answered if depth is None else _cut(answered, depth)
        evaluator = pytrec_eval.RelevanceEvaluator(judged, {_TREC_MEASURES[m][0] for m in names})
        for q, values in evaluator.evaluate(cut).items():
            for m in names:
                per_query[q][m] = float(values[_TREC_MEASURES[m][1]])
    means = {m: sum(per_query[q][m] for q in qids) / len(qids) for m in metrics}
    return means, per_query


@dataclass(frozen=True)
class QueryResult:
    """One query's metrics before and after reranking."""

    query_id: str
    before: dict[str, float]
    after: dict[str, float]

    def delta(self, metric: str = "ndcg@10") -> float:
        """``after - before`` for one metric."""
        return self.after[metric] - self.before[metric]


@dataclass
class EvaluationResult:
    """What :func:`evaluate_reranking` measured.

    Attributes:
        dataset: the dataset's name.
        first_stage_name: ``bm25``, ``dense:MODEL`` or ``run:FILE``.
        model: the scorer's name.
        top_n: candidates reranked per query.
        first_stage: metric -> mean over the evaluated queries, before reranking.
        reranked: the same after reranking.
        per_query: each evaluated query's metrics before and after.
        first_stage_run: the first stage's run.
        reranked_run: the reranked run.
    """

    dataset: str
    first_stage_name: str
    model: str
    top_n: int
    first_stage: dict[str, float]
    reranked: dict[str, float]
    per_query: list[QueryResult]
    first_stage_run: Run = field(repr=False)
    reranked_run: Run = field(repr=False)

    @property
    def queries(self) -> int:
        """How many queries the means are over."""
        return len(self.per_query)

    def metrics_json(self) -> dict[str, Any]:
        """The content of ``metrics.json``."""
        return {
            "first_stage": dict(self.first_stage),
            "reranked": dict(self.reranked),
            "queries": self.queries,
            "model": self.model,
            "top_n": self.top_n,
        }

    def changes(self, metric: str = "ndcg@10") -> tuple[int, int, int]:
        """How many queries got better, worse, and stayed the same on ``metric``."""
        deltas = [r.delta(metric) for r in self.per_query]
        eps = 1e-12
        return sum(d > eps for d in deltas), sum(d < -eps for d in deltas), sum(abs(d) <= eps for d in deltas)

    def save(self, output_dir: str | os.PathLike[str], *, plot: bool = True) -> list[Path]:
        """Write ``metrics.json``, ``first_stage.run``, ``reranked.run``, ``per_query.tsv`` and
        (with ``plot``) ``ndcg10_per_query.png`` into ``output_dir``; return the paths written."""
        out = Path(output_dir).expanduser()
        out.mkdir(parents=True, exist_ok=True)
        written = [out / "metrics.json", out / "first_stage.run", out / "reranked.run", out / "per_query.tsv"]
        written[0].write_text(json.dumps(self.metrics_json(), indent=2) + "\n", encoding="utf-8")
        write_trec_run(self.first_stage_run, written[1], tag=self.first_stage_name)
        write_trec_run(self.reranked_run, written[2], tag=f"{self.first_stage_name}+rerank")
        with written[3].open("w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, delimiter="\t", lineterminator="\n")
            w.writerow(["query-id", *(f"{m}_{when}" for m in METRICS for when in ("before", "after")), "ndcg@10_delta"])
            for r in self.per_query:
                w.writerow(
                    [
                        r.query_id,
                        *(f"{v:.6f}" for m in METRICS for v in (r.before[m], r.after[m])),
                        f"{r.delta():.6f}",
                    ]
                )
        if plot:
            written.append(plot_per_query(self, out / "ndcg10_per_query.png"))
        return written


def evaluate_reranking(
    dataset: Dataset,
    scorer: Scorer | Reranker,
    *,
    first_stage: str | Run = "bm25",
    top_n: int = 100,
    max_queries: int | None = None,
    progress: bool = False,
) -> EvaluationResult:
    """First stage, rerank the top ``top_n``, and metrics before and after, per query too.

    Args:
        dataset: from :func:`load_beir`.
        scorer: a :class:`~ce_rerank.Scorer` (e.g. ``CrossEncoderScorer``) or a ``Reranker``.
        first_stage: ``"bm25"``, ``"dense:MODEL"``, ``"run:FILE"``, or a ready :data:`Run`.
        top_n: candidates reranked per query. The first stage retrieves ``max(top_n, 100)``, so
            Recall@100 is that of the first stage; reranking the top 100 cannot change it.
        max_queries: evaluate only the first this many judged queries (file order).
        progress: progress bar on stderr.
    """
    if isinstance(top_n, bool) or not isinstance(top_n, int) or top_n < 1:
        raise ValueError(f"top_n must be an integer >= 1, got {top_n!r}")
    data = dataset.subset(max_queries)
    depth = max(top_n, MIN_DEPTH)
    if isinstance(first_stage, str):
        label, run = first_stage_run(data, first_stage, top_k=depth)
    else:
        label, run = "run", _cut({q: s for q, s in first_stage.items() if q in data.queries}, depth)
    qids = data.judged_queries
    reranked = rerank_run(data, run, scorer, top_n=top_n, progress=progress)
    before, before_q = evaluate_run(data.qrels, run, query_ids=qids)
    after, after_q = evaluate_run(data.qrels, reranked, query_ids=qids)
    name = scorer.scorer.name if isinstance(scorer, Reranker) else scorer.name
    return EvaluationResult(
        dataset=data.name,
        first_stage_name=label,
        model=str(name),
        top_n=top_n,
        first_stage=before,
        reranked=after,
        per_query=[QueryResult(q, before_q[q], after_q[q]) for q in qids],
        first_stage_run=run,
        reranked_run=reranked,
    )


def plot_per_query(result: EvaluationResult, path: str | os.PathLike[str], *, metric: str = "ndcg@10") -> Path:
    """Scatter plot of each query's ``metric`` before (x) against after (y) reranking, as a PNG."""
    matplotlib = _require("matplotlib", "the per-query plot")
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    xs = [r.before[metric] for r in result.per_query]
    ys = [r.after[metric] for r in result.per_query]
    better, worse, same = result.changes(metric)
    fig, ax = plt.subplots(figsize=(5.5, 5.5), dpi=100)
    try:
        ax.plot([0, 1], [0, 1], color="0.6", linewidth=1, linestyle="--", zorder=1)
        colors = ["tab:green" if y > x else "tab:red" if y < x else "0.4" for x, y in zip(xs, ys, strict=True)]
        ax.scatter(xs, ys, s=18, c=colors, alpha=0.7, zorder=2)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_xlabel(f"{metric.upper()} first stage ({result.first_stage_name})")
        ax.set_ylabel(f"{metric.upper()} reranked (top {result.top_n})")
        ax.set_title(
            f"{result.dataset}: {result.queries} queries; better {better}, worse {worse}, same {same}\n"
            f"mean {result.first_stage[metric]:.3f} -> {result.reranked[metric]:.3f}",
            fontsize=9,
        )
        out = Path(path)
        fig.savefig(out, bbox_inches="tight")
    finally:
        plt.close(fig)
    return out
