"""First stages: BM25 (bm25s), exact dense search, or a TREC run file, named by one spec string."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ._data import MIN_DEPTH, Dataset, DatasetError, Run, _cut, _require, read_trec_run


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


def check_first_stage_spec(spec: str, *, flag: str = "first stage") -> tuple[str, str]:
    """``spec``'s kind and argument, checked before any work: a known kind, and a run file that exists
    (``flag`` names the setting in that message).

    Raises:
        ValueError: an unknown spec, or ``run:FILE`` naming no file.
    """
    kind, _, arg = spec.partition(":")
    if not ((kind == "bm25" and not arg) or (kind in ("dense", "run") and arg)):
        raise ValueError(
            f"unknown first stage {spec!r}: use bm25, dense:MODEL (a sentence-transformers model) or run:FILE "
            "(a TREC run file)"
        )
    if kind == "run" and not Path(arg).expanduser().is_file():
        raise ValueError(f"{flag} run:{arg}: no such file")
    return kind, arg


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
