"""RAG on Ollama with LlamaIndex: Ollama embeddings, a vector index, the cross-encoder reranker, an Ollama LLM.

OllamaEmbedding -> VectorStoreIndex -> query engine (top 50) with CrossEncoderRerank
(top 5) as node postprocessor -> Ollama LLM -> answer.

    pip install "ce-rerank[llamaindex,ollama]"
    ollama pull all-minilm && ollama pull llama3.2
    python examples/llamaindex_ollama_rag.py "How do honeybees tell other bees where to find flowers?"

Options: --embed-model, --llm, --rerank-model (hub id or local directory), --corpus (a
BEIR directory; default the demo corpus shipped in ce_rerank/data/demo), --timeout.
OLLAMA_HOST picks the server (default 127.0.0.1:11434).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import httpx
from _common import (
    PROMPT,
    RETRIEVE_K,
    TOP_N,
    DimensionGuard,
    Passage,
    Row,
    load_corpus,
    ollama_url,
    parse_args,
    print_report,
    run,
)
from llama_index.core import PromptTemplate, VectorStoreIndex
from llama_index.core.base.base_query_engine import BaseQueryEngine
from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.schema import TextNode
from llama_index.embeddings.ollama import OllamaEmbedding
from llama_index.llms.ollama import Ollama

from llamaindex_ce_rerank import CrossEncoderRerank


class CheckedOllamaEmbedding(OllamaEmbedding):
    """OllamaEmbedding that refuses vectors of another dimension than the indexed ones."""

    _guard: DimensionGuard | None = PrivateAttr(default=None)

    def _checked(self, vectors: list[list[float]]) -> list[list[float]]:
        if self._guard is None:
            self._guard = DimensionGuard(self.model_name)
        self._guard.check(vectors)
        return vectors

    def get_general_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._checked(super().get_general_text_embeddings(texts))

    async def aget_general_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return self._checked(await super().aget_general_text_embeddings(texts))

    def get_general_text_embedding(self, texts: str) -> list[float]:
        return self._checked([super().get_general_text_embedding(texts)])[0]

    async def aget_general_text_embedding(self, prompt: str) -> list[float]:
        return self._checked([await super().aget_general_text_embedding(prompt)])[0]


def build_query_engine(
    passages: Sequence[Passage], *, embed_model: str, llm: str, rerank_model: str, base_url: str, timeout: float
) -> tuple[BaseRetriever, BaseQueryEngine]:
    """Index ``passages``; return the vector retriever and the reranking query engine."""
    embed = CheckedOllamaEmbedding(
        model_name=embed_model,
        base_url=base_url,
        client_kwargs={"timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0))},
    )
    nodes = [
        TextNode(
            id_=p.id,
            text=p.text,
            metadata={"title": p.title},
            excluded_embed_metadata_keys=["title"],
            excluded_llm_metadata_keys=["title"],
        )
        for p in passages
    ]
    index = VectorStoreIndex(nodes, embed_model=embed)

    engine = index.as_query_engine(
        llm=Ollama(model=llm, base_url=base_url, request_timeout=timeout, temperature=0),
        similarity_top_k=RETRIEVE_K,
        node_postprocessors=[CrossEncoderRerank(model=rerank_model, top_n=TOP_N)],
        text_qa_template=PromptTemplate(PROMPT.format(context="{context_str}", question="{query_str}")),
    )
    return index.as_retriever(similarity_top_k=RETRIEVE_K), engine


def main(args: argparse.Namespace) -> None:
    passages = load_corpus(args.corpus)
    retriever, engine = build_query_engine(
        passages,
        embed_model=args.embed_model,
        llm=args.llm,
        rerank_model=args.rerank_model,
        base_url=ollama_url(),
        timeout=args.timeout,
    )
    response = engine.query(args.question)
    retrieved = [n.node.node_id for n in retriever.retrieve(args.question)]  # the order before reranking
    rows = [Row.of(n.node.node_id, n.node.metadata) for n in response.source_nodes]
    print_report(str(response), rows, retrieved, model=args.rerank_model)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__.splitlines()[0])))
