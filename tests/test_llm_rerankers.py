"""Instruction-following LLM rerankers (causal LM + yes/no logit, chat template), on a tiny offline model.

The model is built the way sentence-transformers 6 saves Qwen3-Reranker-style cross-encoders
(tests/_models.py: ``build_tiny_llm_reranker``): ``CrossEncoder(dir)`` loads it as a causal LM with
a ``LogitScore`` module, and ``predict(..., prompt=...)`` is the reference for every score here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from _models import RERANKER_PROMPTS, build_tiny_llm_reranker

from ce_rerank import CrossEncoderScorer, RerankerSettings, TruncationWarning
from ce_rerank._prompts import TEMPLATE_SLACK

QUERY = "capital of France"
TEXTS = [
    "The capital of France is Paris, a city on the Seine.",
    "Bananas are yellow fruit rich in potassium.",
    "",
    "Python is a programming language; pytest runs its tests.",
    "Zürich, São Paulo, Kraków and Reykjavík are cities. 東京 is Tokyo. مرحبا بالعالم",
    "Cross-encoders score a query and a passage jointly with full attention. " * 3,
]
INSTRUCTION = "Given a question about geography, retrieve passages that answer it"
LONG = (
    " ".join(["bananas are yellow fruit"] * 50)
    + " the capital of France is Paris "
    + " ".join(["python runs the tests"] * 50)
)
IDENTITY = torch.nn.Identity()


@pytest.fixture(scope="module")
def ce(tiny_llm_reranker_dir: str) -> Any:
    from sentence_transformers import CrossEncoder

    return CrossEncoder(tiny_llm_reranker_dir)


def predict(ce: Any, texts: list[str], **kwargs: Any) -> list[float]:
    return [float(x) for x in ce.predict([(QUERY, t) for t in texts], activation_fn=IDENTITY, **kwargs)]


def rendered_length(ce: Any, query: str, text: str, prompt: str | None) -> int:
    """Tokens of the pair as CrossEncoder.preprocess hands it to the model (nothing truncated)."""
    features = ce.preprocess([(query, text)], prompt=prompt, processing_kwargs={"text": {"truncation": False}})
    return int(features["attention_mask"].sum())


def chunk_of(texts: list[str], pair: Any) -> str:
    """The text of a planned pair: the whole text, or its window."""
    return texts[pair.doc] if pair.span is None else texts[pair.doc][pair.span[0] : pair.span[1]]


def test_the_tiny_model_loads_as_sentence_transformers_loads_llm_rerankers(ce: Any) -> None:
    from sentence_transformers.cross_encoder.modules import LogitScore

    assert type(ce.model).__name__ == "Qwen3ForCausalLM"
    assert isinstance(ce[1], LogitScore) and ce[1].false_token_id is not None
    assert "message" in ce[0].modality_config  # pairs go through the chat template
    assert ce.prompts == RERANKER_PROMPTS and ce.num_labels == 1


@pytest.mark.parametrize(
    "settings",
    [{}, {"prompt": INSTRUCTION}, {"prompt_name": "code"}, {"prompt": ""}],
    ids=["no-prompt", "prompt", "prompt_name", "empty-prompt"],
)
def test_scores_equal_cross_encoder_predict_with_the_same_prompt(
    tiny_llm_reranker_dir: str, ce: Any, settings: dict[str, str]
) -> None:
    scores = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", **settings).score(QUERY, TEXTS)  # type: ignore[arg-type]
    assert scores.raw == pytest.approx(predict(ce, TEXTS, **settings), abs=1e-4)
    sigmoid = ce.predict([(QUERY, t) for t in TEXTS], **settings).tolist()  # its default activation
    assert scores.relevance == pytest.approx(sigmoid, abs=5e-5)


def test_the_prompt_changes_the_scores(tiny_llm_reranker_dir: str) -> None:
    plain = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32").score(QUERY, TEXTS).raw
    prompted = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=INSTRUCTION).score(QUERY, TEXTS).raw
    assert max(abs(a - b) for a, b in zip(plain, prompted, strict=True)) > 1e-3


def test_raw_score_is_logit_yes_minus_logit_no_and_relevance_is_p_yes_of_the_two(tiny_llm_reranker_dir: str) -> None:
    # Computed with transformers alone: the chat template rendered by hand, the causal LM's last position.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_llm_reranker_dir)
    lm = AutoModelForCausalLM.from_pretrained(tiny_llm_reranker_dir).eval()
    yes, no = tok.convert_tokens_to_ids("yes"), tok.convert_tokens_to_ids("no")
    raws, probs = [], []
    for text in TEXTS:
        messages = [
            {"role": "system", "content": INSTRUCTION},
            {"role": "query", "content": QUERY},
            {"role": "document", "content": text},
        ]
        ids = tok(tok.apply_chat_template(messages, tokenize=False), add_special_tokens=False, return_tensors="pt")
        with torch.inference_mode():
            last = lm(**ids).logits[0, -1]
        raws.append(float(last[yes] - last[no]))
        probs.append(float(torch.softmax(last[[no, yes]], dim=0)[1]))
    scores = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=INSTRUCTION).score(QUERY, TEXTS)
    assert scores.raw == pytest.approx(raws, abs=1e-4)
    assert scores.relevance == pytest.approx(probs, abs=1e-5)


def test_a_saved_default_prompt_applies_unless_overridden(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    path = str(build_tiny_llm_reranker(tmp_path / "m", default_prompt_name="code", seed=1))
    ce = CrossEncoder(path)
    default = CrossEncoderScorer(path, dtype="float32").score(QUERY, TEXTS).raw
    assert default == pytest.approx(predict(ce, TEXTS), abs=1e-4)  # predict applies the default too
    assert default == pytest.approx(predict(ce, TEXTS, prompt=RERANKER_PROMPTS["code"]), abs=1e-4)
    off = CrossEncoderScorer(path, dtype="float32", prompt="").score(QUERY, TEXTS).raw
    assert off == pytest.approx(predict(ce, TEXTS, prompt=""), abs=1e-4)
    assert max(abs(a - b) for a, b in zip(default, off, strict=True)) > 1e-3


def test_an_unknown_prompt_name_fails_at_load_naming_the_saved_prompts(tiny_llm_reranker_dir: str) -> None:
    with pytest.raises(ValueError) as err:
        CrossEncoderScorer(tiny_llm_reranker_dir, prompt_name="medical").load()
    assert str(err.value) == (
        "prompt_name='medical' is not one of the model's saved prompts ('code', 'web_search'); "
        "pass one of those, or prompt='...' with your own instruction"
    )


def test_prompt_and_prompt_name_together_are_refused_at_construction(tiny_llm_reranker_dir: str) -> None:
    with pytest.raises(ValueError, match=r"^pass prompt \(your own instruction\) or prompt_name"):
        CrossEncoderScorer(tiny_llm_reranker_dir, prompt="x", prompt_name="code")
    with pytest.raises(ValueError, match="pass prompt"):
        RerankerSettings(model=tiny_llm_reranker_dir, prompt="x", prompt_name="code")


def test_the_first_token_shortcut_leaves_a_causal_model_untouched(tiny_llm_reranker_dir: str, ce: Any) -> None:
    from ce_rerank._speed import first_token_last_layer

    lm = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32").load()
    assert [type(m).__name__ for m in lm.model.model.model.layers] == ["Qwen3DecoderLayer"] * 2
    assert not any(type(m).__name__ == "FirstTokenLayer" for m in lm.model.modules())
    before = {k: v.clone() for k, v in ce.model.state_dict().items()}
    assert first_token_last_layer(ce.model, ce.tokenizer) is False
    after = ce.model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize("prompt", [None, INSTRUCTION])
def test_pair_lengths_count_the_template_and_prompt_and_windows_never_overflow(
    tiny_llm_reranker_dir: str, ce: Any, prompt: str | None
) -> None:
    scorer = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=prompt, window_tokens=10_000)
    lm = scorer.load()
    texts = [LONG, *TEXTS]
    pairs, _, windowed, _ = scorer._plan(lm, QUERY, texts)
    assert windowed == 1
    for p in pairs:
        real = rendered_length(ce, QUERY, chunk_of(texts, p), prompt)
        assert real <= lm.max_length
        if p.length > lm.max_length - 2 * TEMPLATE_SLACK:
            assert p.length == real  # near the window: measured as rendered
        else:
            assert abs(p.length - real) <= TEMPLATE_SLACK  # template, prompt, query exact; text edges may differ
    # window_tokens above the window: each window takes the rest of it (less a few tokens of slack)
    longest = max(p.length for p in pairs if p.doc == 0)
    assert lm.max_length - 8 <= longest <= lm.max_length
    template_only = rendered_length(ce, QUERY, "", prompt)
    assert template_only > 60  # the template, not just the query, is what most of a short pair costs
    assert min(p.length for p in pairs) == template_only  # the empty text


def test_a_long_text_scores_as_its_best_window_scored_alone(tiny_llm_reranker_dir: str, ce: Any) -> None:
    scorer = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=INSTRUCTION, window_tokens=48)
    scores = scorer.score(QUERY, [LONG, "short text"])
    assert scores.windowed == 1
    lm = scorer.load()
    pairs, *_ = scorer._plan(lm, QUERY, [LONG])
    windows = [LONG[p.span[0] : p.span[1]] for p in pairs]  # type: ignore[index]
    every = predict(ce, windows, prompt=INSTRUCTION)
    assert scores.raw[0] == pytest.approx(max(every), abs=1e-4)
    start, end = scores.spans[0]  # type: ignore[misc]
    assert predict(ce, [LONG[start:end]], prompt=INSTRUCTION)[0] == pytest.approx(max(every), abs=1e-4)


def test_batches_are_budgeted_on_the_rendered_tokens(tiny_llm_reranker_dir: str, ce: Any) -> None:
    scorer = CrossEncoderScorer(
        tiny_llm_reranker_dir, dtype="float32", prompt=INSTRUCTION, max_batch_tokens=400, window_tokens=64
    )
    lm = scorer.load()
    texts = [LONG, *TEXTS]
    pairs, *_ = scorer._plan(lm, QUERY, texts)
    batches = list(scorer._batches(pairs))
    assert len(batches) > 1
    for batch in batches:
        chunks = [chunk_of(texts, pairs[i]) for i in batch]
        width = ce.preprocess([(QUERY, c) for c in chunks], prompt=INSTRUCTION)["input_ids"].shape[1]
        planned = pairs[batch[0]].length
        assert abs(width - planned) <= TEMPLATE_SLACK  # the padded width the model gets, up to text edges
        assert len(batch) == 1 or len(batch) * planned <= 400
    small = scorer.score(QUERY, texts).raw
    whole = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=INSTRUCTION, window_tokens=64)
    assert small == pytest.approx(whole.score(QUERY, texts).raw, abs=1e-4)


def test_truncate_mode_warns_and_scores_what_cross_encoder_predict_scores(tiny_llm_reranker_dir: str, ce: Any) -> None:
    scorer = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", long_text="truncate")
    with pytest.warns(TruncationWarning, match="1 of 2 documents were longer"):
        scores = scorer.score(QUERY, [LONG, "short"])
    assert scores.raw == pytest.approx(predict(ce, [LONG, "short"]), abs=1e-4)


def test_a_text_pair_model_takes_the_prompt_in_front_of_the_query(tiny_model_dir: str) -> None:
    from sentence_transformers import CrossEncoder

    bert = CrossEncoder(tiny_model_dir)
    scores = CrossEncoderScorer(tiny_model_dir, dtype="float32", prompt="query: ").score(QUERY, TEXTS)
    assert scores.raw == pytest.approx(predict(bert, TEXTS, prompt="query: "), abs=1e-4)
    lm = CrossEncoderScorer(tiny_model_dir, prompt="query: ").load()
    pairs, *_ = CrossEncoderScorer(tiny_model_dir, prompt="query: ")._plan(lm, QUERY, TEXTS)
    for p in pairs:
        assert p.length == rendered_length(bert, QUERY, TEXTS[p.doc], "query: ")


def test_both_adapters_score_an_llm_reranker_with_its_prompt(tiny_llm_reranker_dir: str, ce: Any) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode

    from langchain_ce_rerank import CrossEncoderRerank as LangChainRerank
    from llamaindex_ce_rerank import CrossEncoderRerank as LlamaIndexRerank

    settings = {"model": tiny_llm_reranker_dir, "dtype": "float32", "prompt": INSTRUCTION, "top_n": None}
    expected = predict(ce, TEXTS, prompt=INSTRUCTION)
    order = sorted(range(len(TEXTS)), key=lambda i: -expected[i])

    docs = [Document(page_content=t, metadata={"i": i}) for i, t in enumerate(TEXTS)]
    out = LangChainRerank(**settings).compress_documents(docs, QUERY)
    assert [d.metadata["i"] for d in out] == order
    assert [d.metadata["ce_raw_score"] for d in out] == pytest.approx([expected[i] for i in order], abs=1e-4)

    nodes = [NodeWithScore(node=TextNode(text=t, metadata={"i": i}), score=1.0) for i, t in enumerate(TEXTS)]
    reranker = LlamaIndexRerank(**settings, metadata_mode=MetadataMode.NONE)  # type: ignore[arg-type]
    got = reranker.postprocess_nodes(nodes, QueryBundle(QUERY))
    assert [n.node.metadata["i"] for n in got] == order
    assert [n.node.metadata["ce_raw_score"] for n in got] == pytest.approx([expected[i] for i in order], abs=1e-4)


def test_a_yes_only_logit_score_model_scores_the_yes_logit_and_its_sigmoid(tmp_path: Path) -> None:
    import json

    from sentence_transformers import CrossEncoder

    path = build_tiny_llm_reranker(tmp_path / "m", seed=2)
    config = path / "1_LogitScore" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "false_token_id": None}))
    ce = CrossEncoder(str(path))
    assert ce[1].false_token_id is None
    scores = CrossEncoderScorer(str(path), dtype="float32").score(QUERY, TEXTS)
    assert scores.raw == pytest.approx(predict(ce, TEXTS), abs=1e-4)
    assert scores.relevance == pytest.approx(torch.sigmoid(torch.tensor(scores.raw)).tolist(), abs=1e-6)


def test_windows_that_overflow_once_rendered_are_shortened_to_fit(
    tiny_llm_reranker_dir: str, ce: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ce_rerank._prompts import PairFrame

    # Undercount the template by 6 tokens, more than the slack: every full window overflows when rendered.
    overhead = PairFrame.overhead
    monkeypatch.setattr(PairFrame, "overhead", lambda self, model, query: overhead(self, model, query) - 6)
    scorer = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", window_tokens=10_000)
    lm = scorer.load()
    pairs, *_ = scorer._plan(lm, QUERY, [LONG])
    for p in pairs:  # every window is near the window's end, so each was measured and shortened
        assert p.length == rendered_length(ce, QUERY, chunk_of([LONG], p), None) <= lm.max_length
    assert max(p.length for p in pairs) >= lm.max_length - 2


def test_a_window_too_small_for_the_template_fails_at_load(tiny_llm_reranker_dir: str) -> None:
    with pytest.raises(ValueError, match=r"^the model's template and prompt take \d+ of its 64-token window"):
        CrossEncoderScorer(tiny_llm_reranker_dir, max_length=64).load()


def test_the_score_cache_keeps_scores_of_different_prompts_apart(tiny_llm_reranker_dir: str, ce: Any) -> None:
    for prompt in (INSTRUCTION, RERANKER_PROMPTS["code"], INSTRUCTION):
        scorer = CrossEncoderScorer(tiny_llm_reranker_dir, dtype="float32", prompt=prompt, cache_size=100)
        assert scorer.score(QUERY, TEXTS).raw == pytest.approx(predict(ce, TEXTS, prompt=prompt), abs=1e-4)


def test_a_sequence_classification_llm_reranker_with_a_chat_template_works_the_same_way(tmp_path: Path) -> None:
    from sentence_transformers import CrossEncoder

    path = str(build_tiny_llm_reranker(tmp_path / "m", sequence_classification=True, seed=3))
    ce = CrossEncoder(path)
    assert type(ce.model).__name__ == "Qwen3ForSequenceClassification" and "message" in ce[0].modality_config
    scorer = CrossEncoderScorer(path, dtype="float32", prompt=INSTRUCTION, window_tokens=10_000)
    scores = scorer.score(QUERY, [*TEXTS, LONG])
    lm = scorer.load()
    assert not any(type(m).__name__ == "FirstTokenLayer" for m in lm.model.modules())
    assert scores.raw[:-1] == pytest.approx(predict(ce, TEXTS, prompt=INSTRUCTION), abs=1e-4)
    start, end = scores.spans[-1]  # type: ignore[misc]
    assert scores.raw[-1] == pytest.approx(predict(ce, [LONG[start:end]], prompt=INSTRUCTION)[0], abs=1e-4)
    pairs, *_ = scorer._plan(lm, QUERY, [LONG])
    assert all(rendered_length(ce, QUERY, chunk_of([LONG], p), INSTRUCTION) <= lm.max_length for p in pairs)
