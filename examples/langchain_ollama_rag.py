"""RAG on Ollama with LangChain: Ollama embeddings, a vector store, the cross-encoder reranker, an Ollama chat model.

OllamaEmbeddings -> InMemoryVectorStore -> retriever (k=50) -> CrossEncoderRerank (top 5)
-> prompt -> ChatOllama -> answer, as one LCEL chain.

    pip install "ce-rerank[langchain,ollama]"
    ollama pull all-minilm && ollama pull llama3.2
    python examples/langchain_ollama_rag.py "How do honeybees tell other bees where to find flowers?"

Options: --embed-model, --llm, --rerank-model (hub id or local directory), --corpus (a
BEIR directory; default the demo corpus shipped in ce_rerank/data/demo), --timeout.
OLLAMA_HOST picks the server (default 127.0.0.1:11434).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from operator import itemgetter

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
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_core.vectorstores import InMemoryVectorStore
from langchain_ollama import ChatOllama, OllamaEmbeddings
from pydantic import PrivateAttr

from langchain_ce_rerank import CrossEncoderRerank


class CheckedOllamaEmbeddings(OllamaEmbeddings):
    """OllamaEmbeddings that refuses vectors of another dimension than the indexed ones."""

    _guard: DimensionGuard | None = PrivateAttr(default=None)

    def _checked(self, vectors: list[list[float]]) -> list[list[float]]:
        if self._guard is None:
            self._guard = DimensionGuard(self.model)
        self._guard.check(vectors)
        return vectors

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._checked(super().embed_documents(texts))

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._checked(await super().aembed_documents(texts))


def format_docs(docs: Sequence[Document]) -> str:
    """One passage per paragraph, best first (whitespace collapsed so a passage stays one paragraph)."""
    return "\n\n".join(" ".join(doc.page_content.split()) for doc in docs)


def build_chain(
    passages: Sequence[Passage], *, embed_model: str, llm: str, rerank_model: str, base_url: str, timeout: float
) -> tuple[BaseRetriever, Runnable]:
    """Index ``passages``; return the vector retriever and the chain ``question -> {docs, question, answer}``."""
    client_kwargs = {"timeout": httpx.Timeout(timeout, connect=min(timeout, 10.0))}  # never wait forever
    embeddings = CheckedOllamaEmbeddings(model=embed_model, base_url=base_url, client_kwargs=client_kwargs)
    store = InMemoryVectorStore(embeddings)
    store.add_documents([Document(page_content=p.text, id=p.id, metadata={"title": p.title}) for p in passages])
    retriever = store.as_retriever(search_kwargs={"k": RETRIEVE_K})

    reranking_retriever = CrossEncoderRerank(model=rerank_model, top_n=TOP_N).as_retriever(retriever)
    chat = ChatOllama(model=llm, base_url=base_url, temperature=0, client_kwargs=client_kwargs)
    answer = (
        {"context": itemgetter("docs") | RunnableLambda(format_docs), "question": itemgetter("question")}
        | ChatPromptTemplate.from_template(PROMPT)
        | chat
        | StrOutputParser()
    )
    chain = RunnableParallel(docs=reranking_retriever, question=RunnablePassthrough()).assign(answer=answer)
    return retriever, chain


def main(args: argparse.Namespace) -> None:
    passages = load_corpus(args.corpus)
    retriever, chain = build_chain(
        passages,
        embed_model=args.embed_model,
        llm=args.llm,
        rerank_model=args.rerank_model,
        base_url=ollama_url(),
        timeout=args.timeout,
    )
    result = chain.invoke(args.question)
    retrieved = [doc.id or "" for doc in retriever.invoke(args.question)]  # the order before reranking
    rows = [Row.of(doc.id or "", doc.metadata) for doc in result["docs"]]
    print_report(result["answer"], rows, retrieved, model=args.rerank_model)


if __name__ == "__main__":
    sys.exit(run(main, parse_args(__doc__.splitlines()[0])))
