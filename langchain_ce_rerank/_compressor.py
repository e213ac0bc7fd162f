"""``CrossEncoderRerank``: the ce-rerank core as a LangChain document compressor."""

from __future__ import annotations

import string
from collections.abc import Iterable, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForRetrieverRun,
    CallbackManagerForRetrieverRun,
    Callbacks,
)
from langchain_core.documents import BaseDocumentCompressor, Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, field_validator

from ce_rerank import RankedCandidate, RerankerSettings


def _rebuild(documents: list[Document], ranked: list[RankedCandidate]) -> list[Document]:
    """New Documents in ranked order: same content and id, a copy of the metadata plus the scores."""
    out = []
    for c in ranked:
        doc = documents[c.index]
        out.append(Document(page_content=doc.page_content, id=doc.id, metadata={**doc.metadata, **c.metadata()}))
    return out


def _documents(documents: Iterable[Document]) -> list[Document]:
    """The caller's Documents as a list (any iterable, a generator included, is read once)."""
    if isinstance(documents, (str, Document)):
        raise TypeError("documents must be a sequence of Document, got a single item: wrap it in a list")
    if not isinstance(documents, Iterable):
        what = type(documents).__name__
        raise TypeError(f"documents must be an iterable of Document (a list, a generator), got {what}")
    docs = list(documents)
    for i, doc in enumerate(docs):
        if not isinstance(doc, Document):
            raise TypeError(f"documents[{i}] must be a langchain_core Document, got {type(doc).__name__}")
    return docs


_FORMATTER = string.Formatter()


def _template_fields(template: str) -> list[str]:
    """The field names of a ``text_template``; only plain names (``{title}``) are allowed."""
    try:
        parsed = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise ValueError(f"text_template {template!r} is not a valid format string ({exc})") from exc
    names = [name for _, name, _, _ in parsed if name is not None]
    for name in names:
        if not name.isidentifier():
            raise ValueError(
                f"text_template field {{{name}}} is not a plain name: use page_content or a metadata key, "
                "e.g. '{title}\\n{page_content}'"
            )
    if not names:
        raise ValueError(f"text_template {template!r} names no field: use e.g. '{{title}}\\n{{page_content}}'")
    return list(dict.fromkeys(names))


def _texts(documents: list[Document], template: str | None) -> list[str]:
    """What the cross-encoder reads for each Document: ``page_content``, or ``template`` filled in."""
    if template is None:
        return [d.page_content for d in documents]
    names = _template_fields(template)
    for i, doc in enumerate(documents):  # every field of every Document, before anything is scored
        for name in names:
            if name != "page_content" and name not in doc.metadata:
                keys = ", ".join(sorted(map(str, doc.metadata))) or "none"
                raise ValueError(
                    f"text_template needs metadata[{name!r}], which documents[{i}] does not have (its metadata "
                    f"keys: {keys}): add the field to every Document or change text_template"
                )
    return [template.format_map({**d.metadata, "page_content": d.page_content}) for d in documents]


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

    Rank on more than ``page_content`` (a title in metadata, say):
        .. code-block:: python

            reranker = CrossEncoderRerank(text_template="{title}\\n{page_content}", top_n=5)

    Returns new Documents (same ``page_content`` and ``id``; metadata is a copy of the
    input's plus ``relevance_score``, ``ce_raw_score``, ``retrieval_rank`` and, when they
    apply, ``fusion_score`` and ``ce_best_span``, a span of the text scored: the filled-in
    ``text_template`` when one is set), sorted and cut to ``top_n``/``min_score``.
    The input Documents are never mutated; ``documents`` may be any iterable (read once).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    text_template: str | None = Field(
        default=None,
        description="What the cross-encoder reads for each Document: None (default) is page_content; a format "
        "string over page_content and metadata keys, e.g. '{title}\\n{page_content}', fills those in. A missing "
        "field is an error naming it, raised before anything is scored.",
    )

    @field_validator("text_template")
    @classmethod
    def _check_template(cls, value: str | None) -> str | None:
        if value is not None:
            _template_fields(value)
        return value

    def compress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Rerank ``documents`` (any iterable of Documents) for ``query``; see the class docstring."""
        docs = _documents(documents)
        texts = _texts(docs, self.text_template)
        ranked = self.reranker().rerank(query, texts, ids=[d.id or "" for d in docs])
        return _rebuild(docs, ranked)

    async def acompress_documents(
        self,
        documents: Sequence[Document],
        query: str,
        callbacks: Callbacks | None = None,
    ) -> Sequence[Document]:
        """Async :meth:`compress_documents`: the event loop keeps running while the model scores."""
        docs = _documents(documents)
        texts = _texts(docs, self.text_template)
        ranked = await self.reranker().arerank(query, texts, ids=[d.id or "" for d in docs])
        return _rebuild(docs, ranked)

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
