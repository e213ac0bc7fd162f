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


MIXED = [
    "The capital of France is Paris, on the Seine.",
    "Paris.",
    "Bananas are yellow fruit rich in potassium; they grow in the tropics and are picked green. " * 3,
    "France borders Spain, Italy and Germany.",
]


def _last_layer(scorer: CrossEncoderScorer) -> torch.nn.Module:
    return scorer.load().model.model.bert.encoder.layer[-1]


@pytest.mark.parametrize("model_dir", ["minilm_model_dir", "tiny_two_label_model_dir"])
def test_the_last_layer_computes_the_first_token_only_and_scores_stay_exact(
    model_dir: str, request: pytest.FixtureRequest
) -> None:
    from sentence_transformers import CrossEncoder

    path = request.getfixturevalue(model_dir)
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(path, dtype="float32", backend="torch")
    got = scorer.score(QUERY, MIXED)  # one padded batch: masking of the short pairs is exercised
    assert type(_last_layer(scorer)).__name__ == "FirstTokenLayer"
    reference = CrossEncoder(path)  # untouched model
    assert type(reference.model.bert.encoder.layer[-1]).__name__ == "BertLayer"
    logits = reference.predict([(QUERY, t) for t in MIXED], activation_fn=torch.nn.Identity())
    logits = torch.as_tensor(logits).reshape(len(MIXED), -1)
    expected = logits[:, 0] if logits.shape[1] == 1 else logits[:, 1] - logits[:, 0]
    assert got.raw == pytest.approx(expected.tolist(), abs=1e-4)


@pytest.mark.parametrize("fault", ["wrong logits", "an exception"])
def test_a_rewrite_that_changes_the_logits_or_fails_is_undone(
    tiny_model_dir: str, monkeypatch: pytest.MonkeyPatch, fault: str
) -> None:
    from sentence_transformers import CrossEncoder

    from ce_rerank import _speed

    class Wrong(torch.nn.Module):
        def __init__(self, layer: torch.nn.Module) -> None:
            super().__init__()
            self.layer = layer

        def forward(self, hidden_states: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
            if fault == "an exception":
                raise RuntimeError("a layer this code does not know")
            return torch.zeros_like(hidden_states[:, :1])

    monkeypatch.setattr(_speed, "_first_token_layer_class", lambda: Wrong)
    ce = CrossEncoder(tiny_model_dir)
    before = ce.predict([(QUERY, t) for t in MIXED])
    assert _speed.first_token_last_layer(ce.model, ce.tokenizer) is False
    assert type(ce.model.bert.encoder.layer[-1]).__name__ == "BertLayer"
    assert ce.predict([(QUERY, t) for t in MIXED]).tolist() == before.tolist()


def test_heads_that_read_more_than_the_first_token_are_not_rewritten(tiny_model_dir: str) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForTokenClassification

    from ce_rerank import _speed

    model = BertForTokenClassification(
        BertConfig(vocab_size=500, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    ).eval()
    assert _speed.first_token_last_layer(model, AutoTokenizer.from_pretrained(tiny_model_dir)) is False
    assert type(model.bert.encoder.layer[-1]).__name__ == "BertLayer"


@pytest.mark.skipif(not native_bfloat16(), reason="this CPU has no native bfloat16")
def test_bfloat16_keeps_linear_weights_in_bfloat16_and_the_rest_in_float32(minilm_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(minilm_model_dir, dtype="bfloat16", backend="torch")
    model = scorer.load().model.model
    linears = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    assert linears and all(p.dtype == torch.bfloat16 for m in linears for p in m.parameters())
    assert model.bert.embeddings.word_embeddings.weight.dtype == torch.float32
    assert model.bert.embeddings.LayerNorm.weight.dtype == torch.float32
    # the products are autocast's: the same scores as a float32 model under bfloat16 autocast
    from sentence_transformers import CrossEncoder

    reference = CrossEncoder(minilm_model_dir)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        expected = reference.predict([(QUERY, t) for t in MIXED], activation_fn=torch.nn.Identity())
    exact = reference.predict([(QUERY, t) for t in MIXED], activation_fn=torch.nn.Identity())
    got = scorer.score(QUERY, MIXED).raw
    # Within a bfloat16 step (2**-7 relative): oneDNN's AMX kernels can round the pre-cast weights' products in
    # another order than autocast's (a Xeon with AMX measured one step on one score).
    assert got == pytest.approx(expected.tolist(), rel=2**-7)
    assert got != pytest.approx(exact.tolist(), abs=1e-6)


def test_int8_is_never_picked_for_you(tiny_model_dir: str) -> None:
    # neither int8 path passed the fidelity gate (benchmarks/README.md), so auto never asks for one
    assert CrossEncoderScorer(tiny_model_dir).quantize == "none"
    assert CrossEncoderScorer(tiny_model_dir, quantize="auto").quantize == "none"


INT8_FIX = "use device='cpu', backend='openvino' or 'torch', or quantize='none'"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"quantize": "int4"}, "quantize must be one of 'auto', 'none', 'int8', got 'int4'"),
        ({"quantize": "int8", "dtype": "bfloat16"}, "leave dtype='auto' or set dtype='float32'"),
        ({"quantize": "int8", "backend": "onnx"}, INT8_FIX),
        ({"quantize": "int8", "device": "cuda"}, INT8_FIX),
    ],
)
def test_bad_quantize_settings_name_the_fix(tiny_model_dir: str, settings: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        CrossEncoderScorer(tiny_model_dir, **settings)  # type: ignore[arg-type]


def test_int8_quantises_every_linear_layer_in_a_model_of_its_own(minilm_model_dir: str) -> None:
    ce_rerank.clear_model_cache()
    exact = CrossEncoderScorer(minilm_model_dir, dtype="float32", backend="torch")
    int8 = CrossEncoderScorer(minilm_model_dir, quantize="int8", backend="torch")
    assert int8.dtype == "float32"
    exact_scores, int8_scores = exact.score(QUERY, MIXED), int8.score(QUERY, MIXED)
    assert ce_rerank.loaded_models() == 2
    model = int8.load().model.model
    assert not any(type(m) is torch.nn.Linear for m in model.modules())
    quantised = [m for m in model.modules() if isinstance(m, torch.ao.nn.quantized.dynamic.Linear)]
    assert len(quantised) == 6 * 6 + 2  # q, k, v, attention out, intermediate, output per layer; pooler, head
    assert int8_scores.raw != exact_scores.raw
    assert int8_scores.raw == pytest.approx(exact_scores.raw, abs=0.05)


def test_a_backend_without_optimum_says_so(tiny_model_dir: str) -> None:
    pytest.importorskip("sentence_transformers")
    try:
        import optimum  # noqa: F401
    except ImportError:
        pass
    else:  # pragma: no cover - optimum cannot be installed beside sentence-transformers 6
        pytest.skip("optimum is installed")
    with pytest.raises(ce_rerank.ModelLoadError, match="use backend='torch'"):
        CrossEncoderScorer(tiny_model_dir, backend="onnx").score(QUERY, TEXTS)


@pytest.mark.parametrize("family", ["Roberta", "XLMRoberta", "Electra"])
def test_the_first_token_layer_holds_for_other_bert_family_classifiers(
    family: str, tiny_model_dir: str, tmp_path: object
) -> None:
    import shutil
    from pathlib import Path

    import transformers
    from sentence_transformers import CrossEncoder

    out = Path(str(tmp_path)) / family
    shutil.copytree(tiny_model_dir, out)
    for name in ("config.json", "model.safetensors"):
        (out / name).unlink()
    config = getattr(transformers, f"{family}Config")(
        vocab_size=600, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=160, type_vocab_size=2, pad_token_id=0, num_labels=1, initializer_range=0.5,
        architectures=[f"{family}ForSequenceClassification"],
    )  # fmt: skip
    torch.manual_seed(0)
    getattr(transformers, f"{family}ForSequenceClassification")(config).save_pretrained(out)
    ce_rerank.clear_model_cache()
    scorer = CrossEncoderScorer(str(out), dtype="float32", max_length=128, backend="torch")
    got = scorer.score(QUERY, MIXED)
    model = scorer.load().model.model
    assert type(getattr(model, model.base_model_prefix).encoder.layer[-1]).__name__ == "FirstTokenLayer"
    expected = CrossEncoder(str(out), max_length=128).predict(
        [(QUERY, t) for t in MIXED], activation_fn=torch.nn.Identity()
    )
    assert got.raw == pytest.approx(expected.tolist(), abs=1e-4)
    assert max(got.raw) - min(got.raw) > 1e-3  # the texts score differently: the check has teeth
