"""The core Reranker with a fake scorer: input checks, failure modes, logging."""

from __future__ import annotations

import logging

import pytest
from conftest import FakeScorer

from ce_rerank import Reranker, ScorerError, Scores


def test_empty_candidate_list_returns_empty_without_calling_the_scorer(fake_scorer: FakeScorer) -> None:
    assert Reranker(fake_scorer).rerank("q", []) == []
    assert fake_scorer.calls == 0


async def test_async_empty_candidate_list_returns_empty_without_calling_the_scorer(fake_scorer: FakeScorer) -> None:
    assert await Reranker(fake_scorer).arerank("q", []) == []
    assert fake_scorer.calls == 0


@pytest.mark.parametrize("query", ["", "   ", "\n\t"])
def test_empty_query_raises_value_error(fake_scorer: FakeScorer, query: str) -> None:
    with pytest.raises(ValueError, match="query is empty: pass the user's question or search string"):
        Reranker(fake_scorer).rerank(query, ["a"])


def test_a_single_string_instead_of_a_list_is_refused(fake_scorer: FakeScorer) -> None:
    with pytest.raises(TypeError, match="got a single string: wrap it in a list"):
        Reranker(fake_scorer).rerank("q", "abc")


def test_empty_and_whitespace_documents_are_scored_not_dropped(fake_scorer: FakeScorer) -> None:
    ranked = Reranker(fake_scorer, top_n=None).rerank("q", ["", "  ", "abc"])
    assert [c.index for c in ranked] == [2, 1, 0]


def test_scorer_returning_the_wrong_count_raises_scorer_error() -> None:
    class Short(FakeScorer):
        def score(self, query, texts):  # type: ignore[no-untyped-def]
            return Scores.from_raw([1.0])

    with pytest.raises(ScorerError, match="returned 1 scores for 2 texts"):
        Reranker(Short()).rerank("q", ["a", "b"])


def test_on_error_raise_propagates_the_scorer_failure() -> None:
    with pytest.raises(ConnectionError, match="down"):
        Reranker(FakeScorer(fail=ConnectionError("down"))).rerank("q", ["a", "b"])


def test_on_error_passthrough_keeps_every_candidate_in_retriever_order(caplog: pytest.LogCaptureFixture) -> None:
    reranker = Reranker(FakeScorer(fail=ConnectionError("down")), top_n=1, on_error="passthrough")
    with caplog.at_level(logging.WARNING, logger="ce_rerank"):
        ranked = reranker.rerank("q", ["a", "b", "c"])
    assert [c.index for c in ranked] == [0, 1, 2]
    assert all(c.rerank_error == "ConnectionError: down" and c.relevance_score is None for c in ranked)
    assert ranked[0].metadata() == {"retrieval_rank": 1, "rerank_error": "ConnectionError: down"}
    assert "on_error='passthrough'" in caplog.text


async def test_async_on_error_passthrough_matches_sync() -> None:
    reranker = Reranker(FakeScorer(fail=RuntimeError("boom")), on_error="passthrough")
    assert await reranker.arerank("q", ["a", "b"]) == reranker.rerank("q", ["a", "b"])


def test_on_error_passthrough_still_raises_on_bad_input() -> None:
    with pytest.raises(ValueError, match="query is empty"):
        Reranker(FakeScorer(), on_error="passthrough").rerank(" ", ["a"])


def test_info_log_is_one_line_without_document_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ce_rerank"):
        Reranker(FakeScorer()).rerank("q", ["SECRET-MARKER-1", "bb"])
    records = [r for r in caplog.records if r.name == "ce_rerank"]
    assert len(records) == 1
    assert "reranked 2 candidates with fake" in records[0].getMessage()
    assert "SECRET-MARKER" not in caplog.text


def test_debug_log_shows_what_moved_by_id(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ce_rerank"):
        Reranker(FakeScorer()).rerank("q", ["a", "bbbb", "cc"], ids=["doc_1", "doc_42", "doc_7"])
    table = caplog.records[-1].getMessage()
    lines = table.splitlines()
    assert lines[2].split()[:3] == ["1", "2", "0.9820"] and "doc_42" in lines[2] and "(up 1)" in lines[2]
    assert "doc_1" in lines[4] and "(down 2)" in lines[4]


def test_debug_log_labels_texts_without_ids_by_hash_not_text(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ce_rerank"):
        Reranker(FakeScorer()).rerank("q", ["SECRET-MARKER-2"])
    assert "SECRET-MARKER-2" not in caplog.text
    assert "t:" in caplog.text
