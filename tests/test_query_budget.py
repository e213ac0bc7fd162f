"""The query token budget (max_query_tokens): long queries are cut to it, with a warning; texts get the rest."""

# The planning under test is shared by both engines; these tests read the torch tokenizer directly
# (tests/test_openvino.py checks that OpenVINO cuts queries and applies prompts the same way).

from __future__ import annotations

import warnings
from typing import Any

import pytest

from ce_rerank import CrossEncoderScorer, QueryTruncationWarning, RerankerSettings, TruncationWarning
from ce_rerank.workflows.cli import main

LONG_QUERY = "what is the capital of France and which river runs through Paris " * 12
TEXTS = [
    "The capital of France is Paris, a city on the Seine.",
    "Bananas are yellow fruit rich in potassium.",
    "Reciprocal rank fusion combines several ranked lists into one.",
]
LONG_TEXT = " ".join(["bananas are yellow fruit"] * 80)


def cut_by_hand(tokenizer: Any, query: str, budget: int) -> str:
    """The query's first ``budget`` tokens, as text."""
    offsets = tokenizer(query, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    assert len(offsets) > budget
    return query[: offsets[budget - 1][1]]


def test_a_long_query_is_cut_to_the_budget_with_one_warning_and_scores_as_the_cut_query(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, backend="torch", dtype="float32", max_query_tokens=12)
    tok = scorer.load().model.tokenizer
    with pytest.warns(QueryTruncationWarning) as caught:
        scores = scorer.score(LONG_QUERY, [*TEXTS, LONG_TEXT])
    assert len(caught) == 1
    n = len(tok(LONG_QUERY, add_special_tokens=False)["input_ids"])
    assert str(caught[0].message).startswith(
        f"the query has {n} tokens, more than max_query_tokens=12: it was cut to its first 12 tokens"
    )
    cut = cut_by_hand(tok, LONG_QUERY, 12)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the cut query fits: no warning
        by_hand = scorer.score(cut, [*TEXTS, LONG_TEXT])
    assert scores.raw == by_hand.raw
    assert scores.spans == by_hand.spans


def test_the_query_warning_is_a_truncation_warning(tiny_model_dir: str) -> None:
    assert issubclass(QueryTruncationWarning, TruncationWarning)
    with pytest.warns(TruncationWarning):
        CrossEncoderScorer(tiny_model_dir, backend="torch", max_query_tokens=8).score(LONG_QUERY, ["a"])


def test_text_windows_use_the_rest_of_the_window(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(
        tiny_model_dir, backend="torch", dtype="float32", max_query_tokens=20, window_tokens=10_000
    )
    lm = scorer.load()
    tok = lm.model.tokenizer
    pairs, _, windowed, _ = scorer._plan(lm, LONG_QUERY, [LONG_TEXT])
    assert windowed == 1
    # [CLS] query(20) [SEP] window [SEP]: the window takes everything else of the model window
    assert all(p.length == lm.max_length for p in pairs)
    for p in pairs:
        real = tok(cut_by_hand(tok, LONG_QUERY, 20), LONG_TEXT[p.span[0] : p.span[1]])["input_ids"]  # type: ignore[index]
        assert len(real) <= lm.max_length
    shorter = CrossEncoderScorer(tiny_model_dir, backend="torch", max_query_tokens=60, window_tokens=10_000)
    more_room, *_ = scorer._plan(lm, LONG_QUERY, [LONG_TEXT])
    less_room, *_ = shorter._plan(lm, LONG_QUERY, [LONG_TEXT])
    assert len(less_room) > len(more_room)  # a bigger query budget leaves smaller windows: more of them


def test_the_default_budget_is_half_the_window_and_the_warning_says_so(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, backend="torch", dtype="float32")
    lm = scorer.load()
    half = (lm.max_length - 3) // 2  # 3 special tokens in a BERT pair
    with pytest.warns(QueryTruncationWarning, match=f"the default query budget of {half} tokens"):
        scores = scorer.score(LONG_QUERY, TEXTS)
    cut = cut_by_hand(lm.model.tokenizer, LONG_QUERY, half)
    assert scores.raw == scorer.score(cut, TEXTS).raw


def test_a_query_within_the_budget_is_left_whole_without_a_warning(tiny_model_dir: str) -> None:
    from sentence_transformers import CrossEncoder

    query = "capital of France"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        scores = CrossEncoderScorer(tiny_model_dir, backend="torch", dtype="float32", max_query_tokens=3).score(
            query, TEXTS
        )
    expected = CrossEncoder(tiny_model_dir).predict([(query, t) for t in TEXTS], activation_fn=lambda x: x)
    assert scores.raw == pytest.approx(expected.tolist(), abs=1e-4)


def test_the_budget_excludes_the_prompt_and_template_of_an_llm_reranker(tiny_llm_reranker_dir: str) -> None:
    from sentence_transformers import CrossEncoder

    instruction = "Given a web search query, retrieve relevant passages that answer the query"
    scorer = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=instruction, max_query_tokens=10)
    tok = scorer.load().model.tokenizer
    with pytest.warns(QueryTruncationWarning, match="max_query_tokens=10"):
        scores = scorer.score(LONG_QUERY, TEXTS)
    cut = cut_by_hand(tok, LONG_QUERY, 10)
    expected = CrossEncoder(tiny_llm_reranker_dir).predict(
        [(cut, t) for t in TEXTS], prompt=instruction, activation_fn=lambda x: x
    )
    assert scores.raw == pytest.approx(expected.tolist(), abs=1e-4)


def test_a_budget_that_leaves_no_room_for_text_fails_at_load_naming_the_most_it_can_be(tiny_model_dir: str) -> None:
    with pytest.raises(ValueError) as err:
        CrossEncoderScorer(tiny_model_dir, backend="torch", max_query_tokens=120).load()
    assert str(err.value) == (
        "max_query_tokens=120 leaves the text fewer than 8 tokens of the model's 128-token window "
        "(3 go to special tokens, template and prompt): set max_query_tokens to at most 117"
    )


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "16"])
def test_a_bad_budget_fails_at_construction(tiny_model_dir: str, bad: Any) -> None:
    with pytest.raises(ValueError, match=r"^max_query_tokens must be an integer >= 1 or None \(half the window\)"):
        CrossEncoderScorer(tiny_model_dir, backend="torch", max_query_tokens=bad)


def test_settings_and_both_adapters_take_the_budget(tiny_model_dir: str) -> None:
    from langchain_core.documents import Document

    from langchain_ce_rerank import CrossEncoderRerank

    settings = RerankerSettings(model=tiny_model_dir, max_query_tokens=12)
    assert settings._local_scorer().max_query_tokens == 12
    with pytest.raises(ValueError, match="max_query_tokens must be an integer >= 1"):
        RerankerSettings(model=tiny_model_dir, max_query_tokens=0)
    adapter = CrossEncoderRerank(model=tiny_model_dir, max_query_tokens=12, dtype="float32")
    with pytest.warns(QueryTruncationWarning):
        adapter.compress_documents([Document(page_content=t) for t in TEXTS], LONG_QUERY)


def test_the_command_line_takes_max_query_tokens_and_the_prompt_flags(
    tmp_path: Any, tiny_model_dir: str, capsys: pytest.CaptureFixture[str]
) -> None:
    docs = tmp_path / "docs.txt"
    docs.write_text("\n".join(TEXTS) + "\n")
    base = ["rerank", "--model", tiny_model_dir, "--device", "cpu", "--docs", str(docs)]
    with pytest.warns(QueryTruncationWarning, match="max_query_tokens=12"):
        assert main([*base, "--query", LONG_QUERY, "--max-query-tokens", "12"]) == 0
    assert main([*base, "--query", "capital", "--prompt", "query: "]) == 0
    capsys.readouterr()
    assert main([*base, "--query", "capital", "--prompt-name", "nope"]) == 2
    assert "prompt_name='nope' is not one of the model's saved prompts (none)" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main([*base, "--query", "capital", "--prompt", "x", "--prompt-name", "y"])
    assert "not allowed with argument" in capsys.readouterr().err
