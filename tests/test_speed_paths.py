"""The speed settings of the local scorer: the score cache and the automatic precision."""

from __future__ import annotations

import pytest
import torch

import ce_rerank
from ce_rerank import CrossEncoderScorer
from ce_rerank._local import native_bfloat16

QUERY = "capital of France"
TEXTS = ["The capital of France is Paris.", "Bananas are yellow fruit.", "Python runs the tests."]
LONG = " ".join(["bananas are yellow fruit"] * 60) + " the capital of France is Paris " + " ".join(["tests"] * 200)


def test_the_cache_is_off_by_default(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir)
    assert scorer.cache_size == 0
    first, second = scorer.score(QUERY, TEXTS), scorer.score(QUERY, TEXTS)
    assert first.pairs == second.pairs == 3


def test_a_repeated_query_is_answered_from_the_cache_with_the_same_scores(tiny_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", cache_size=100)
    first = scorer.score(QUERY, TEXTS)
    again = scorer.score(QUERY, list(reversed(TEXTS)))
    assert first.pairs == 3 and again.pairs == 0 and again.batches == 0
    assert again.raw == list(reversed(first.raw))
    assert again.relevance == list(reversed(first.relevance))


def test_only_new_texts_reach_the_model(tiny_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", cache_size=100)
    scorer.score(QUERY, TEXTS[:2])
    mixed = scorer.score(QUERY, TEXTS)
    uncached = CrossEncoderScorer(tiny_model_dir, dtype="float32").score(QUERY, TEXTS)
    assert mixed.pairs == 1
    assert mixed.raw == pytest.approx(uncached.raw, abs=1e-4)
    other_query = scorer.score("bananas", TEXTS[:1])
    assert other_query.pairs == 1  # the key is (query, text), not the text alone


def test_cached_windowed_documents_keep_their_best_span(tiny_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(tiny_model_dir, window_tokens=32, cache_size=10)
    first = scorer.score(QUERY, [LONG, "short"])
    again = scorer.score(QUERY, [LONG])
    assert first.windowed == 1 and again.pairs == 0
    assert again.spans == [first.spans[0]] and again.raw == [first.raw[0]]


def test_the_cache_evicts_the_least_recently_used_pair(tiny_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(tiny_model_dir, cache_size=2)
    scorer.score(QUERY, TEXTS[:2])
    scorer.score(QUERY, TEXTS[:1])  # TEXTS[0] is now the most recently used
    scorer.score(QUERY, TEXTS[2:])  # evicts TEXTS[1]
    assert scorer.score(QUERY, TEXTS[:1]).pairs == 0
    assert scorer.score(QUERY, TEXTS[1:2]).pairs == 1


def test_the_cache_is_shared_by_scorers_with_the_same_settings_only(tiny_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    CrossEncoderScorer(tiny_model_dir, dtype="float32", cache_size=10).score(QUERY, TEXTS)
    # the adapters build a scorer per call: a new scorer with the same settings hits the cache
    assert CrossEncoderScorer(tiny_model_dir, dtype="float32", cache_size=10).score(QUERY, TEXTS).pairs == 0
    # other settings give other scores, so they never read these
    assert CrossEncoderScorer(tiny_model_dir, dtype="bfloat16", cache_size=10).score(QUERY, TEXTS).pairs == 3
    assert (
        CrossEncoderScorer(tiny_model_dir, dtype="float32", window_tokens=16, cache_size=10).score(QUERY, TEXTS).pairs
        == 3
    )
    ce_rerank.clear_model_cache()
    assert CrossEncoderScorer(tiny_model_dir, dtype="float32", cache_size=10).score(QUERY, TEXTS).pairs == 3


def test_the_adapters_pass_cache_size_through(tiny_model_dir: str) -> None:
    from langchain_core.documents import Document

    from langchain_ce_rerank import CrossEncoderRerank

    ce_rerank.clear_model_cache()
    reranker = CrossEncoderRerank(model=tiny_model_dir, cache_size=10, top_n=None)
    docs = [Document(page_content=t) for t in TEXTS]
    first = reranker.compress_documents(docs, QUERY)
    scorer = reranker.reranker().scorer
    assert isinstance(scorer, CrossEncoderScorer) and scorer.cache_size == 10
    assert scorer.score(QUERY, TEXTS).pairs == 0  # filled by the adapter's call
    assert [d.page_content for d in reranker.compress_documents(docs, QUERY)] == [d.page_content for d in first]


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_a_bad_cache_size_fails_at_construction(tiny_model_dir: str, value: object) -> None:
    with pytest.raises(ValueError) as err:
        CrossEncoderScorer(tiny_model_dir, cache_size=value)  # type: ignore[arg-type]
    assert str(err.value) == f"cache_size must be an integer >= 0, got {value!r}"


def test_native_bfloat16_follows_what_torch_reports(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert native_bfloat16() is True
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert native_bfloat16() is False


def test_default_precision_keeps_the_ranking_of_exact_float32(minilm_model_dir: str) -> None:
    texts = [
        "The capital of France is Paris, on the Seine.",
        "Paris is known for the Eiffel Tower.",
        "Bananas are yellow fruit rich in potassium.",
        "France borders Spain, Italy and Germany.",
        "Python is a programming language.",
    ]
    exact = CrossEncoderScorer(minilm_model_dir, dtype="float32").score(QUERY, texts)
    default = CrossEncoderScorer(minilm_model_dir).score(QUERY, texts)
    assert default.raw == pytest.approx(exact.raw, abs=0.1)
    if native_bfloat16():
        assert default.raw != exact.raw  # the fast path really ran
