"""Ranking policy: order, ties, cut-offs and Reciprocal Rank Fusion, on hand-made scores."""

from __future__ import annotations

import pytest

from ce_rerank import Scores, rank


def test_rank_orders_by_score_and_returns_positions_into_the_input() -> None:
    ranked = rank(Scores.from_raw([0.1, 3.0, -2.0, 1.0]))
    assert [c.index for c in ranked] == [1, 3, 0, 2]
    assert [c.retrieval_rank for c in ranked] == [2, 4, 1, 3]


def test_rank_breaks_ties_by_retrieval_order() -> None:
    ranked = rank(Scores.from_raw([1.0, 2.0, 1.0, 2.0, 1.0]))
    assert [c.index for c in ranked] == [1, 3, 0, 2, 4]


def test_rank_sorts_on_raw_scores_where_the_sigmoid_saturates() -> None:
    scores = Scores.from_raw([40.0, 45.0, 42.0])
    assert scores.relevance[0] == scores.relevance[1] == 1.0  # saturated in float arithmetic
    assert [c.index for c in rank(scores)] == [1, 2, 0]


def test_rank_cuts_to_top_n_after_filtering_on_min_score() -> None:
    scores = Scores.from_raw([0.0, 2.0, -3.0, 1.0])  # relevance 0.5, 0.88, 0.047, 0.73
    ranked = rank(scores, top_n=2, min_score=0.6)
    assert [c.index for c in ranked] == [1, 3]
    assert [c.index for c in rank(scores, min_score=0.6)] == [1, 3]
    assert [c.index for c in rank(scores, top_n=3, min_score=0.4)] == [1, 3, 0]


def test_rank_with_top_n_larger_than_input_keeps_everything() -> None:
    assert len(rank(Scores.from_raw([1.0, 2.0]), top_n=10)) == 2


def test_rank_of_no_scores_is_empty() -> None:
    assert rank(Scores.from_raw([]), top_n=3) == []


def test_rrf_counts_ranks_from_one_with_k_60() -> None:
    # retriever order: 0, 1, 2; cross-encoder order: 2, 0, 1
    ranked = rank(Scores.from_raw([1.0, 0.0, 2.0]), fusion="rrf")
    by_index = {c.index: c.fusion_score for c in ranked}
    assert by_index[0] == pytest.approx(1 / 61 + 1 / 62)
    assert by_index[1] == pytest.approx(1 / 62 + 1 / 63)
    assert by_index[2] == pytest.approx(1 / 63 + 1 / 61)
    # 0 and 2 tie exactly; the retriever's order breaks the tie
    assert [c.index for c in ranked] == [0, 2, 1]
    assert all(c.score == c.fusion_score for c in ranked)


def test_rrf_weights_and_k_change_the_fused_order() -> None:
    scores = Scores.from_raw([0.0, 1.0, 2.0])
    assert [c.index for c in rank(scores, fusion="rrf", rrf_weights=(0.0, 1.0))] == [2, 1, 0]
    assert [c.index for c in rank(scores, fusion="rrf", rrf_weights=(1.0, 0.0))] == [0, 1, 2]
    fused = rank(scores, fusion="rrf", rrf_k=1.0, rrf_weights=(2.0, 1.0))
    assert {c.index: c.fusion_score for c in fused}[0] == pytest.approx(2 / 2 + 1 / 4)


def test_rrf_min_score_still_applies_to_relevance() -> None:
    ranked = rank(Scores.from_raw([-5.0, 5.0, 0.0]), fusion="rrf", min_score=0.4)
    assert sorted(c.index for c in ranked) == [1, 2]


def test_metadata_carries_the_design_keys() -> None:
    (best,) = rank(Scores.from_raw([2.0], spans=[(3, 9)]), top_n=1)
    meta = best.metadata()
    assert set(meta) == {"relevance_score", "ce_raw_score", "retrieval_rank", "ce_best_span"}
    assert meta["ce_best_span"] == [3, 9]
    (fused,) = rank(Scores.from_raw([2.0]), fusion="rrf")
    assert "fusion_score" in fused.metadata()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"top_n": 0}, "top_n must be an integer >= 1 (or None to keep every candidate), got 0"),
        ({"top_n": True}, "top_n must be an integer >= 1 (or None to keep every candidate), got True"),
        (
            {"min_score": 1.5},
            "min_score must lie in [0, 1]: it applies to relevance_score, got 1.5; "
            "to filter on the model's raw output, filter on metadata['ce_raw_score'] yourself",
        ),
        ({"fusion": "borda"}, "fusion must be None or 'rrf', got 'borda'"),
        ({"rrf_k": 0}, "rrf_k must be > 0, got 0"),
        (
            {"rrf_weights": (1.0,)},
            "rrf_weights must be two non-negative numbers (retriever, cross-encoder), got [1.0]",
        ),
    ],
)
def test_rank_rejects_settings_that_cannot_work(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        rank(Scores.from_raw([1.0]), **kwargs)
    assert str(err.value) == message
