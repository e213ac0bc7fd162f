"""Real text behaviour with the WikiQA-trained cross-encoder in ../shared (skipped when absent)."""

from __future__ import annotations

import random

import pytest

from ce_rerank import CrossEncoderScorer, TruncationWarning

pytestmark = pytest.mark.shared_data

QUESTION = "how tall is the eiffel tower"
ANSWER = "The Eiffel Tower is 330 metres (1,083 ft) tall, about the same height as an 81-storey building."
FILLER = [
    "The committee reviewed the budget for the next fiscal year and postponed the vote.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The river delta supports a wide range of migratory birds during the winter.",
    "Medieval guilds regulated the trade of craftsmen in many European towns.",
    "The algorithm runs in linear time when the input is already sorted.",
    "Volcanic soil is often fertile because of its high mineral content.",
]


def _long_document(seed: int) -> str:
    rng = random.Random(seed)
    before = " ".join(rng.choice(FILLER) for _ in range(30))
    after = " ".join(rng.choice(FILLER) for _ in range(30))
    return f"{before} {ANSWER} {after}"


def test_the_answer_is_found_inside_a_long_document(shared_model_dir: str) -> None:
    doc = _long_document(0)
    distractor = " ".join(FILLER * 10)
    windowed = CrossEncoderScorer(shared_model_dir).score(QUESTION, [distractor, doc, ANSWER])
    assert windowed.windowed == 2
    start, end = windowed.spans[1]  # type: ignore[misc]
    assert ANSWER[:40] in doc[start:end]  # the best window holds the answer
    assert windowed.relevance[1] > 0.5 > windowed.relevance[0]
    with pytest.warns(TruncationWarning):
        truncated = CrossEncoderScorer(shared_model_dir, long_text="truncate").score(QUESTION, [distractor, doc])
    assert truncated.relevance[1] < 0.5  # the answer sits past the cut: truncation misses it
