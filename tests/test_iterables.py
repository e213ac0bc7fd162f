"""The core takes any iterable of texts (a generator included), reads it once, and refuses the rest."""

from __future__ import annotations

import logging
import re

import pytest
from conftest import FakeScorer

from ce_rerank import CrossEncoderScorer, Reranker

TEXTS = ["a", "ccc", "bb"]


def test_reranker_ranks_a_generator_like_a_list(fake_scorer: FakeScorer, caplog: pytest.LogCaptureFixture) -> None:
    reranker = Reranker(fake_scorer, top_n=None)
    expected = reranker.rerank("q", TEXTS, ids=["id-x", "id-y", "id-z"])
    with caplog.at_level(logging.DEBUG, logger="ce_rerank"):
        got = reranker.rerank("q", (t for t in TEXTS), ids=(i for i in ["id-x", "id-y", "id-z"]))
    assert got == expected
    assert "ccc" not in caplog.text and "id-y" in caplog.text  # the ids generator labels the DEBUG table


async def test_async_reranker_ranks_a_generator_like_a_list(fake_scorer: FakeScorer) -> None:
    reranker = Reranker(fake_scorer, top_n=2)
    assert await reranker.arerank("q", iter(TEXTS)) == reranker.rerank("q", TEXTS)


def test_the_local_scorer_scores_a_generator_like_a_list(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir)
    assert scorer.score("q", (t for t in TEXTS)) == scorer.score("q", TEXTS)


@pytest.mark.parametrize(("texts", "what"), [(5, "int"), (None, "NoneType")])
def test_something_that_is_not_iterable_is_refused_with_our_message(
    fake_scorer: FakeScorer, texts: object, what: str
) -> None:
    message = f"texts must be an iterable of strings (a list, a tuple, a generator), got {what}"
    with pytest.raises(TypeError, match=f"^{re.escape(message)}$"):
        Reranker(fake_scorer).rerank("q", texts)  # type: ignore[arg-type]
