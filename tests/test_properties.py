"""Hostile candidate lists, as property tests: the ranking core and both adapters.

Any candidate list (empty, duplicates, empty strings, 1 MB strings, NUL and other control
characters, emoji, right-to-left text, lone surrogates) gives a sorted subset of the input
of length ``min(top_n, n)`` above ``min_score``, stable for ties, without mutating the
input; the only errors are the documented ones (an empty query is a ``ValueError``).

The ordering logic runs with the FakeScorer (a text scores its length: many ties); a few
examples run through the tiny real model.
"""

from __future__ import annotations

import asyncio
import copy
import math
import warnings
from collections.abc import Iterator

import pytest
from conftest import FakeScorer
from fake_rerank_server import FakeRerankServer, fake_logit, fake_relevance
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ce_rerank import RankedCandidate, Reranker, Scores, WindowCapWarning, rank

ONE_MB = "Paris " * (2**20 // 6)
SPECIAL = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x07\x08\x1b[31mred\x1b[0m\x7f",
    "\r\n\t\x0b\x0c",
    "\u200b\u200c\u200d\ufeff",
    "🙂🚀👩‍👩‍👧‍👦🇫🇷",
    "مرحبا بالعالم",
    "שלום עולם",
    "\u202eevil\u202c text",
    "\u200f right-to-left mark",
    "\ud800",
    "x\udfffy",
    "\ud83d",  # half of an emoji
    "Paris is the capital of France.",
    "Paris is the capital of France.",  # a duplicate
]
ALPHABET = st.one_of(
    st.characters(),
    st.integers(0xD800, 0xDFFF).map(chr),  # lone surrogates
    st.sampled_from(["\x00", "\x1b", "\u202e", "\u200f", "🙂", "ع", "\ufffd"]),
)
TEXT = st.one_of(st.sampled_from(SPECIAL), st.text(alphabet=ALPHABET, max_size=40))
TEXTS = st.lists(TEXT, max_size=12)
TOP_N = st.one_of(st.none(), st.integers(1, 15))
MIN_SCORE = st.one_of(st.none(), st.floats(0.0, 1.0))
QUERY = st.one_of(st.just("capital of France"), st.text(alphabet=ALPHABET, max_size=20))
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _is_lone_surrogate_free(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def check_ranking(
    ranked: list[RankedCandidate], relevance: list[float], raw: list[float], top_n: int | None, min_score: float | None
) -> None:
    """The contract of the ranking policy, stated as properties of the output."""
    n = len(raw)
    indices = [c.index for c in ranked]
    assert len(set(indices)) == len(indices) and all(0 <= i < n for i in indices)  # a subset
    passing = [i for i in range(n) if min_score is None or relevance[i] >= min_score]
    assert len(ranked) == min(top_n if top_n is not None else n, len(passing))
    keys = [(-c.fusion_score, c.index) if c.fusion_score is not None else (-raw[c.index], c.index) for c in ranked]
    assert keys == sorted(keys)  # best first; ties keep the retriever's order
    for c in ranked:
        assert c.retrieval_rank == c.index + 1
        assert min_score is None or (c.relevance_score is not None and c.relevance_score >= min_score)
        assert c.relevance_score == relevance[c.index] and c.ce_raw_score == raw[c.index]
    if ranked and ranked[0].fusion_score is None:  # the kept ones are the best ones
        dropped = [i for i in passing if i not in set(indices)]
        assert all((-raw[i], i) > keys[-1] for i in dropped)


# -- the ranking core --------------------------------------------------------------------------


@FAST
@given(
    raw=st.lists(st.one_of(st.floats(-50, 50), st.sampled_from([0.0, 1.0, -1.0])), max_size=30),
    top_n=TOP_N,
    min_score=MIN_SCORE,
    fusion=st.sampled_from([None, "rrf"]),
)
def test_rank_returns_a_sorted_stable_subset(
    raw: list[float], top_n: int | None, min_score: float | None, fusion: str | None
) -> None:
    scores = Scores.from_raw(raw)
    before = copy.deepcopy(scores)
    ranked = rank(scores, top_n=top_n, min_score=min_score, fusion=fusion)  # type: ignore[arg-type]
    check_ranking(ranked, scores.relevance, scores.raw, top_n, min_score)
    assert scores == before


@FAST
@given(texts=TEXTS, query=QUERY, top_n=TOP_N, min_score=MIN_SCORE, use_async=st.booleans())
def test_reranker_takes_any_candidate_list(
    texts: list[str], query: str, top_n: int | None, min_score: float | None, use_async: bool
) -> None:
    texts_before = list(texts)
    reranker = Reranker(FakeScorer(), top_n=top_n, min_score=min_score)
    if not query.strip():
        with pytest.raises(ValueError, match="query is empty"):
            reranker.rerank(query, texts)
        return
    ranked = asyncio.run(reranker.arerank(query, texts)) if use_async else reranker.rerank(query, texts)
    expected = Scores.from_raw([float(len(t)) for t in texts])
    check_ranking(ranked, expected.relevance, expected.raw, top_n, min_score)
    assert texts == texts_before


def test_reranker_takes_one_megabyte_strings() -> None:
    texts = ["short", ONE_MB, "", ONE_MB + "!", "mid " * 100]
    ranked = Reranker(FakeScorer(), top_n=3).rerank("capital", texts)
    assert [c.index for c in ranked] == [3, 1, 4]


def test_non_string_candidates_are_a_type_error_naming_the_position() -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] must be a string, got NoneType"):
        Reranker(FakeScorer()).rerank("q", ["a", None])  # type: ignore[list-item]


# -- the LangChain adapter ---------------------------------------------------------------------


def _lc_check(out: list, docs: list, top_n: int | None, min_score: float | None) -> None:
    by_id = {d.id: i for i, d in enumerate(docs)}
    expected = Scores.from_raw([float(len(d.page_content)) for d in docs])
    ranked = [
        RankedCandidate(
            index=by_id[d.id],
            relevance_score=d.metadata["relevance_score"],
            ce_raw_score=d.metadata["ce_raw_score"],
            retrieval_rank=d.metadata["retrieval_rank"],
        )
        for d in out
    ]
    check_ranking(ranked, expected.relevance, expected.raw, top_n, min_score)
    for d in out:
        src = docs[by_id[d.id]]
        assert d.page_content == src.page_content
        assert d.metadata["source"] == src.metadata["source"]


@FAST
@given(texts=TEXTS, top_n=TOP_N, min_score=MIN_SCORE)
def test_langchain_adapter_takes_any_candidate_list(
    texts: list[str], top_n: int | None, min_score: float | None
) -> None:
    from langchain_core.documents import Document

    from langchain_ce_rerank import CrossEncoderRerank

    docs = [Document(page_content=t, id=f"d{i}", metadata={"source": i, "tags": ["x"]}) for i, t in enumerate(texts)]
    before = [d.model_dump() for d in docs]
    out = list(CrossEncoderRerank(scorer=FakeScorer(), top_n=top_n, min_score=min_score).compress_documents(docs, "q"))
    assert [d.model_dump() for d in docs] == before
    _lc_check(out, docs, top_n, min_score)


def test_langchain_adapter_takes_one_megabyte_documents_async() -> None:
    from langchain_core.documents import Document

    from langchain_ce_rerank import CrossEncoderRerank

    docs = [Document(page_content=t, id=str(i), metadata={"source": i}) for i, t in enumerate(["a", ONE_MB, "", "bb"])]
    out = asyncio.run(CrossEncoderRerank(scorer=FakeScorer(), top_n=2).acompress_documents(docs, "q"))
    assert [d.id for d in out] == ["1", "3"]
    assert out[0].page_content is docs[1].page_content or out[0].page_content == ONE_MB


# -- the LlamaIndex adapter --------------------------------------------------------------------


@FAST
@given(texts=TEXTS, top_n=TOP_N, min_score=MIN_SCORE)
def test_llamaindex_adapter_takes_any_candidate_list(
    texts: list[str], top_n: int | None, min_score: float | None
) -> None:
    from llama_index.core.schema import NodeWithScore, TextNode

    from llamaindex_ce_rerank import CrossEncoderRerank

    nodes = [NodeWithScore(node=TextNode(text=t, id_=f"n{i}"), score=0.5 - i / 100) for i, t in enumerate(texts)]
    before = [n.model_dump() for n in nodes]
    out = CrossEncoderRerank(scorer=FakeScorer(), top_n=top_n, min_score=min_score).postprocess_nodes(
        nodes, query_str="q"
    )
    assert [n.model_dump() for n in nodes] == before
    by_id = {n.node.node_id: i for i, n in enumerate(nodes)}
    expected = Scores.from_raw([float(len(t)) for t in texts])
    ranked = [
        RankedCandidate(
            index=by_id[n.node.node_id],
            relevance_score=n.node.metadata["relevance_score"],
            ce_raw_score=n.node.metadata["ce_raw_score"],
            retrieval_rank=n.node.metadata["retrieval_rank"],
        )
        for n in out
    ]
    check_ranking(ranked, expected.relevance, expected.raw, top_n, min_score)
    for n in out:
        assert n.node.get_content() == texts[by_id[n.node.node_id]]
        assert n.score == n.node.metadata["relevance_score"]
        assert math.isclose(n.node.metadata["retrieval_score"], nodes[by_id[n.node.node_id]].score or 0.0)


# -- a few examples through the tiny real model ------------------------------------------------


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(texts=st.lists(TEXT, max_size=6), top_n=TOP_N)
def test_real_model_through_both_adapters_takes_hostile_text(
    tiny_model_dir: str, texts: list[str], top_n: int | None
) -> None:
    # Lone surrogates through the real model: see test_real_model_scores_lone_surrogates below.
    assume(all(_is_lone_surrogate_free(t) for t in texts))
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from langchain_ce_rerank import CrossEncoderRerank as LcRerank
    from llamaindex_ce_rerank import CrossEncoderRerank as LiRerank

    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(texts)]
    nodes = [NodeWithScore(node=TextNode(text=t, id_=str(i))) for i, t in enumerate(texts)]
    lc = LcRerank(model=tiny_model_dir, device="cpu", top_n=top_n).compress_documents(docs, "capital of France")
    li = LiRerank(model=tiny_model_dir, device="cpu", top_n=top_n).postprocess_nodes(
        nodes, query_str="capital of France"
    )
    assert len(lc) == len(li) == min(top_n or len(texts), len(texts))
    assert [d.id for d in lc] == [n.node.node_id for n in li]
    raws = [d.metadata["ce_raw_score"] for d in lc]
    assert raws == sorted(raws, reverse=True)
    assert all(0.0 <= d.metadata["relevance_score"] <= 1.0 and math.isfinite(d.metadata["ce_raw_score"]) for d in lc)
    # identical texts get identical scores
    for a in lc:
        for b in lc:
            if a.page_content == b.page_content:
                assert a.metadata["ce_raw_score"] == b.metadata["ce_raw_score"]


def test_real_model_takes_a_one_megabyte_document_with_the_window_cap_warning(tiny_model_dir: str) -> None:
    from langchain_core.documents import Document

    from langchain_ce_rerank import CrossEncoderRerank

    docs = [Document(page_content=t, id=str(i)) for i, t in enumerate(["Bananas are yellow.", ONE_MB, "\x00🙂"])]
    with pytest.warns(WindowCapWarning, match="1 of 3 documents needed more than max_windows=64 windows"):
        out = CrossEncoderRerank(model=tiny_model_dir, device="cpu", top_n=3).compress_documents(docs, "Paris")
    assert sorted(str(d.id) for d in out) == ["0", "1", "2"]
    assert out[[d.id for d in out].index("1")].metadata["ce_best_span"][1] <= len(ONE_MB)


def test_real_model_scores_lone_surrogates(tiny_model_dir: str) -> None:
    from ce_rerank import CrossEncoderScorer

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = CrossEncoderScorer(tiny_model_dir, device="cpu").score("capital \ud800", ["ok \udfff", "fine"])
    assert len(scores) == 2 and all(math.isfinite(r) for r in scores.raw)


# -- the remote scorer -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeRerankServer]:
    with FakeRerankServer(max_batch=5) as server:
        yield server


@FAST
@given(texts=TEXTS, top_n=TOP_N)
def test_remote_scorer_takes_any_candidate_list(
    fake_server: FakeRerankServer, texts: list[str], top_n: int | None
) -> None:
    pytest.importorskip("httpx")
    from ce_rerank._remote import RemoteScorer

    texts_before = list(texts)
    with RemoteScorer(fake_server.url, max_batch=4, backoff=0.01) as scorer:
        ranked = Reranker(scorer, top_n=top_n).rerank("capital of France", texts)
    # lone surrogates cannot travel as UTF-8: the server sees U+FFFD in their place
    sent = [t.encode("utf-16", "surrogatepass").decode("utf-16", "replace") for t in texts]
    expected_raw = [fake_logit("capital of France", t) for t in sent]
    expected_rel = [fake_relevance("capital of France", t) for t in sent]
    assert len(ranked) == min(top_n or len(texts), len(texts))
    for c in ranked:
        assert c.ce_raw_score == pytest.approx(expected_raw[c.index], abs=1e-9)
        assert c.relevance_score == pytest.approx(expected_rel[c.index], abs=1e-12)
    keys = [(-expected_raw[c.index], c.index) for c in ranked]
    assert keys == sorted(keys)
    assert texts == texts_before
