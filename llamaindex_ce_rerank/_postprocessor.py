"""``CrossEncoderRerank``: the ce-rerank core as a LlamaIndex node postprocessor."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from llama_index.core.bridge.pydantic import ConfigDict, Field
from llama_index.core.callbacks import CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle

from ce_rerank import RankedCandidate, RerankerSettings

dispatcher = get_dispatcher(__name__)

SCORE_KEYS = (
    "relevance_score",
    "ce_raw_score",
    "retrieval_rank",
    "retrieval_score",
    "fusion_score",
    "ce_best_span",
    "rerank_error",
)


def _excluded(keys: list[str]) -> list[str]:
    return [*keys, *(k for k in SCORE_KEYS if k not in keys)]


def _rebuild(nodes: list[NodeWithScore], ranked: list[RankedCandidate]) -> list[NodeWithScore]:
    """New NodeWithScore objects around copies of the nodes; the inputs are never mutated."""
    out = []
    for c in ranked:
        nws = nodes[c.index]
        metadata = {**nws.node.metadata, **c.metadata()}
        if nws.score is not None:
            metadata["retrieval_score"] = nws.score
        node = nws.node.model_copy(
            update={
                "metadata": metadata,
                "excluded_llm_metadata_keys": _excluded(list(nws.node.excluded_llm_metadata_keys)),
                "excluded_embed_metadata_keys": _excluded(list(nws.node.excluded_embed_metadata_keys)),
            }
        )
        out.append(NodeWithScore(node=node, score=c.score))
    return out


class CrossEncoderRerank(RerankerSettings, BaseNodePostprocessor):
    """Reranks retrieved nodes with a cross-encoder.

    Setup:
        ``pip install "ce-rerank[llamaindex]"``

    Use:
        .. code-block:: python

            from llama_index.core import VectorStoreIndex
            from llamaindex_ce_rerank import CrossEncoderRerank

            reranker = CrossEncoderRerank(model="cross-encoder/ms-marco-MiniLM-L-6-v2", top_n=5)
            engine = index.as_query_engine(similarity_top_k=50, node_postprocessors=[reranker])
            response = engine.query("what is the capital of France?")
            node = response.source_nodes[0]
            node.score                                # 0.97: relevance_score (fusion_score with fusion="rrf")
            node.node.metadata["retrieval_score"]     # 0.71: what the retriever said
            node.node.metadata["retrieval_rank"]      # 7: where the retriever had it

    Returns new ``NodeWithScore`` objects (copies of the nodes) whose ``score`` is the sort
    score; the score keys (``relevance_score``, ``ce_raw_score``, ``retrieval_rank``,
    ``retrieval_score`` and, when they apply, ``fusion_score``, ``ce_best_span``) go into the
    copy's metadata and are excluded from LLM and embedding text. Emits
    ``ReRankStartEvent``/``ReRankEndEvent`` and the ``RERANKING`` callback event.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid", protected_namespaces=())

    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED,
        description="Which node text the cross-encoder reads: node.get_content(metadata_mode=...).",
    )

    @classmethod
    def class_name(cls) -> str:
        return "CrossEncoderRerank"

    def _prepare(
        self, nodes: Iterable[NodeWithScore], query_bundle: QueryBundle | None
    ) -> tuple[list[NodeWithScore], str, list[str]]:
        """The nodes as a list (any iterable, read once), the query and the texts to score."""
        if query_bundle is None:
            raise ValueError(
                "CrossEncoderRerank needs the query: call postprocess_nodes(nodes, query_str=...) "
                "or use it inside a query engine"
            )
        if isinstance(nodes, (str, NodeWithScore)) or not isinstance(nodes, Iterable):
            raise TypeError(
                f"nodes must be an iterable of NodeWithScore (a list, a generator), got {type(nodes).__name__}"
            )
        listed = list(nodes)
        texts = []
        for i, nws in enumerate(listed):
            if not isinstance(nws, NodeWithScore):
                raise TypeError(f"nodes[{i}] must be a NodeWithScore, got {type(nws).__name__}")
            texts.append(nws.node.get_content(metadata_mode=self.metadata_mode))
        return listed, query_bundle.query_str, texts

    @contextmanager
    def _reranking(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None, query: str
    ) -> Iterator[Callable[[list[RankedCandidate]], list[NodeWithScore]]]:
        """The start/end events and the RERANKING callback around one call; yields the result builder."""
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n or len(nodes), model_name=self.scorer_name
            )
        )
        payload: dict[Any, Any] = {
            EventPayload.NODES: nodes,
            EventPayload.MODEL_NAME: self.scorer_name,
            EventPayload.QUERY_STR: query,
            EventPayload.TOP_K: self.top_n,
        }
        new_nodes: list[NodeWithScore] = []
        with self.callback_manager.event(CBEventType.RERANKING, payload=payload) as event:

            def finish(ranked: list[RankedCandidate]) -> list[NodeWithScore]:
                new_nodes.extend(_rebuild(nodes, ranked))
                event.on_end(payload={EventPayload.NODES: new_nodes})
                return new_nodes

            yield finish
        dispatcher.event(ReRankEndEvent(nodes=new_nodes))

    def _postprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        listed, query, texts = self._prepare(nodes, query_bundle)  # validate before any event is emitted
        reranker = self.reranker()
        with self._reranking(listed, query_bundle, query) as finish:
            return finish(reranker.rerank(query, texts, ids=[n.node.node_id for n in listed]))

    async def _apostprocess_nodes(
        self, nodes: list[NodeWithScore], query_bundle: QueryBundle | None = None
    ) -> list[NodeWithScore]:
        listed, query, texts = self._prepare(nodes, query_bundle)
        reranker = self.reranker()
        with self._reranking(listed, query_bundle, query) as finish:
            return finish(await reranker.arerank(query, texts, ids=[n.node.node_id for n in listed]))
