"""``CrossEncoderRerank``: the ce-rerank core as a LangChain document compressor."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict

from ce_rerank import RankedCandidate, RerankerSettings


def _rebuild(documents: Sequence[Document], ranked: list[RankedCandidate]) -> list[Document]:
    """New Documents in ranked order: same content and id, a copy of the metadata plus the scores."""
    out = []
    for c in ranked:
        doc = documents[c.index]
        out.append(Document(page_content=doc.page_content, id=doc.id, metadata={**doc.metadata, **c.metadata()}))
    return out


def _texts(documents: Sequence[Document]) -> list[str]:
    if isinstance(documents, (str, Document)):
        raise TypeError("documents must be a sequence of Document, got a single item: wrap it in a list")
    texts = []
    for i, doc in enumerate(documents):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}")
        texts.append(doc.page_content)
    return texts


class CrossEncoderRerank(RerankerSettings, BaseDocumentCompressor):
    """Reranks retrieved Documents with a cross-encoder.

    Setup:
        ``pip install "ce-rerank[langchain]"``

    Instantiate:
        .. code-block:: python

            from langchain_ce_rerank import CrossEncoderRerank

            reranker = CrossEncoderRerank(model="cross-encoder/ms-marco-MiniLM-L-6-v2", top_n=5)

    Invoke:
        .. code-block:: python

            docs = reranker.compress_documents(retrieved_docs, "what is the capital of France?")
            docs[0].metadata["relevance_score"]   # 0.97: sigmoid of the model's logit, in [0, 1]
            docs[0].metadata["ce_raw_score"]      # 3.5: the raw logit
            docs[0].metadata["retrieval_rank"]    # 7: where the retriever had it

    After a retriever (langchain-classic):
        .. code-block:: python

            from langchain_classic.retrievers import ContextualCompressionRetriever

            retriever = ContextualCompressionRetriever(
                base_compressor=reranker, base_retriever=vectorstore.as_retriever(search_kwargs={"k": 50})
            )

    After a retriever, without langchain-classic (a Runnable retriever):
        .. code-block:: python

            retriever = reranker.as_retriever(vectorstore.as_retriever(search_kwargs={"k": 50}))
            chain = {"context": retriever, "question": RunnablePassthrough()} | prompt | llm

    Returns new Documents (same ``page_content`` and ``id``; metadata is a copy of the
    input's plus ``relevance_score``, ``ce_raw_score``, ``retrieval_rank`` and, when they
    apply, ``fusion_score`` and ``ce_best_span``), sorted and cut to ``top_n``/``min_score``.
    The input Documents are never mutated.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` for ``query``; see the class docstring for the result."""
        texts = _texts(documents)
        ranked = self.reranker().rerank(query, texts, ids=[d.id or "" for d in documents])
        return _rebuild(documents, ranked)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the event loop keeps running while the model scores."""
        texts = _texts(documents)
        ranked = await self.reranker().arerank(query, texts, ids=[d.id or "" for d in documents])
        return _rebuild(documents, ranked)

    def as_retriever(self, base_retriever: BaseRetriever) -> RerankRetriever:
        """A retriever that runs ``base_retriever`` and reranks what it returns.

        Use it wherever LangChain takes a retriever or a Runnable (LCEL chains), without
        needing langchain-classic's ContextualCompressionRetriever.
        """
        return RerankRetriever(base_retriever=base_retriever, reranker=self)


class RerankRetriever(BaseRetriever):
    """``base_retriever`` followed by a :class:`CrossEncoderRerank`, as one retriever (a Runnable).

    Example:
        .. code-block:: python

            retriever = RerankRetriever(base_retriever=store.as_retriever(search_kwargs={"k": 50}),
                                        reranker=CrossEncoderRerank(top_n=5))
            retriever.invoke("what is the capital of France?")  # 5 Documents, best first
    """

    base_retriever: BaseRetriever
    """The first stage: any LangChain retriever (vector store, BM25, ensemble, ...)."""
    reranker: CrossEncoderRerank
    """The cross-encoder reranker applied to what ``base_retriever`` returns."""

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = self.base_retriever.invoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        return list(self.reranker.compress_documents(docs, query, callbacks=run_manager.get_child()))

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        docs = await self.base_retriever.ainvoke(query, config={"callbacks": run_manager.get_child()}, **kwargs)
        return list(await self.reranker.acompress_documents(docs, query, callbacks=run_manager.get_child()))
