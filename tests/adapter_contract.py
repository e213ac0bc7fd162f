"""One contract for both adapters: subclassed once per framework (test_langchain, test_llamaindex).

A subclass says how to build its framework's items, run its adapter, and read results back;
every test here then runs against that adapter.
"""

from __future__ import annotations

import asyncio
import copy
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from conftest import FakeScorer

from ce_rerank import CrossEncoderScorer

QUERY = "capital of France"
TEXTS = [
    "Bananas are yellow fruit rich in potassium.",
    "The capital of France is Paris, a city on the Seine.",
    "",
    "Reciprocal rank fusion combines several ranked lists into one.",
    "Zürich 🙂 مرحبا \x00 control \x07 chars",
    "The Eiffel Tower was completed in 1889 for the World's Fair.",
    "Bananas are yellow fruit rich in potassium.",
]


class AdapterContract:
    """Subclasses implement the five hooks below."""

    def make(self, **settings: Any) -> Any:
        raise NotImplementedError

    def items(self, texts: list[str]) -> list[Any]:
        """The framework's retrieved items, one per text, each with metadata {"source": i}."""
        raise NotImplementedError

    def run(self, adapter: Any, items: list[Any], query: str) -> list[Any]:
        raise NotImplementedError

    async def arun(self, adapter: Any, items: list[Any], query: str) -> list[Any]:
        raise NotImplementedError

    def text(self, item: Any) -> str:
        raise NotImplementedError

    def metadata(self, item: Any) -> dict[str, Any]:
        raise NotImplementedError

    def sort_score(self, item: Any) -> float | None:
        """The score the framework sorts by (LlamaIndex: NodeWithScore.score), or None."""
        return None

    # -- the contract ---------------------------------------------------------------------

    def test_returns_top_n_in_the_scorers_order(self, tiny_model_dir: str) -> None:
        out = self.run(self.make(model=tiny_model_dir, top_n=3), self.items(TEXTS), QUERY)
        raw = CrossEncoderScorer(tiny_model_dir).score(QUERY, TEXTS).raw
        expected = sorted(range(len(TEXTS)), key=lambda i: (-raw[i], i))[:3]
        assert [self.metadata(o)["source"] for o in out] == expected
        assert [self.text(o) for o in out] == [TEXTS[i] for i in expected]

    def test_writes_the_score_keys(self, tiny_model_dir: str) -> None:
        out = self.run(self.make(model=tiny_model_dir, top_n=None), self.items(TEXTS), QUERY)
        scores = CrossEncoderScorer(tiny_model_dir).score(QUERY, TEXTS)
        for o in out:
            meta = self.metadata(o)
            i = meta["source"]
            assert meta["relevance_score"] == pytest.approx(scores.relevance[i])
            assert meta["ce_raw_score"] == pytest.approx(scores.raw[i])
            assert meta["retrieval_rank"] == i + 1
            assert 0.0 <= meta["relevance_score"] <= 1.0
            assert "fusion_score" not in meta and "ce_best_span" not in meta
        assert len(out) == len(TEXTS)  # nothing dropped: duplicates, empty and odd texts included

    def test_never_mutates_the_input(self, tiny_model_dir: str) -> None:
        items = self.items(TEXTS)
        before = copy.deepcopy(items)
        out = self.run(self.make(model=tiny_model_dir, top_n=2, fusion="rrf"), items, QUERY)
        assert items == before
        assert all(o is not i for o in out for i in items)
        assert all("relevance_score" not in self.metadata(i) for i in items)

    def test_empty_input_returns_empty_without_loading_the_model(self, tmp_path: Any) -> None:
        adapter = self.make(model=str(tmp_path / "no-model-here"))
        assert self.run(adapter, [], QUERY) == []
        assert asyncio.run(self.arun(adapter, [], QUERY)) == []

    def test_a_generator_of_items_is_read_once_and_ranked_like_a_list(self, tiny_model_dir: str) -> None:
        adapter = self.make(model=tiny_model_dir, top_n=3)
        from_list = self.run(adapter, self.items(TEXTS), QUERY)
        from_generator = self.run(adapter, (item for item in self.items(TEXTS)), QUERY)
        from_async = asyncio.run(self.arun(adapter, iter(self.items(TEXTS)), QUERY))
        assert [self.metadata(o) for o in from_generator] == [self.metadata(o) for o in from_list]
        assert [self.metadata(o) for o in from_async] == [self.metadata(o) for o in from_list]

    def test_empty_query_raises_value_error(self, fake_scorer: FakeScorer) -> None:
        with pytest.raises(ValueError, match="query is empty"):
            self.run(self.make(scorer=fake_scorer), self.items(["a"]), "  ")

    def test_async_equals_sync(self, tiny_model_dir: str) -> None:
        adapter = self.make(model=tiny_model_dir, top_n=4)
        sync = self.run(adapter, self.items(TEXTS), QUERY)
        asynchronous = asyncio.run(self.arun(adapter, self.items(TEXTS), QUERY))
        assert [self.metadata(o) for o in asynchronous] == [self.metadata(o) for o in sync]

    def test_concurrent_calls_equal_serial_calls(self, tiny_model_dir: str) -> None:
        adapter = self.make(model=tiny_model_dir, top_n=4)
        queries = [f"{QUERY} {i}" for i in range(6)]
        serial = [[self.metadata(o) for o in self.run(adapter, self.items(TEXTS), q)] for q in queries]
        with ThreadPoolExecutor(4) as pool:
            threaded = list(
                pool.map(lambda q: [self.metadata(o) for o in self.run(adapter, self.items(TEXTS), q)], queries)
            )

        async def gather() -> list[list[dict[str, Any]]]:
            outs = await asyncio.gather(*(self.arun(adapter, self.items(TEXTS), q) for q in queries))
            return [[self.metadata(o) for o in out] for out in outs]

        assert threaded == serial
        assert asyncio.run(gather()) == serial

    def test_min_score_filters_on_relevance(self) -> None:
        scorer = FakeScorer({"good": 2.0, "meh": 0.0, "bad": -2.0})
        out = self.run(self.make(scorer=scorer, top_n=None, min_score=0.5), self.items(["bad", "meh", "good"]), QUERY)
        assert [self.text(o) for o in out] == ["good", "meh"]

    def test_rrf_fusion_sorts_by_fusion_score(self) -> None:
        scorer = FakeScorer({"a": 0.0, "b": 1.0, "c": 2.0})
        out = self.run(self.make(scorer=scorer, top_n=None, fusion="rrf"), self.items(["a", "b", "c"]), QUERY)
        fused = [self.metadata(o)["fusion_score"] for o in out]
        assert fused == sorted(fused, reverse=True)
        assert self.metadata(out[0])["fusion_score"] == pytest.approx(1 / 61 + 1 / 63)
        if self.sort_score(out[0]) is not None:
            assert [self.sort_score(o) for o in out] == fused

    def test_long_text_reports_the_best_span(self, tiny_model_dir: str) -> None:
        long = " ".join(["bananas are yellow fruit"] * 80) + " the capital of France is Paris"
        out = self.run(self.make(model=tiny_model_dir, window_tokens=32), self.items([long, "short"]), QUERY)
        by_source = {self.metadata(o)["source"]: self.metadata(o) for o in out}
        start, end = by_source[0]["ce_best_span"]
        assert 0 <= start < end <= len(long)
        assert "ce_best_span" not in by_source[1]

    def test_passthrough_returns_the_retriever_order_flagged(self) -> None:
        adapter = self.make(scorer=FakeScorer(fail=ConnectionError("server down")), top_n=1, on_error="passthrough")
        out = self.run(adapter, self.items(["a", "b", "c"]), QUERY)
        assert [self.text(o) for o in out] == ["a", "b", "c"]
        assert all(self.metadata(o)["rerank_error"] == "ConnectionError: server down" for o in out)

    def test_scorer_failure_raises_by_default(self) -> None:
        with pytest.raises(ConnectionError, match="server down"):
            self.run(self.make(scorer=FakeScorer(fail=ConnectionError("server down"))), self.items(["a"]), QUERY)

    @pytest.mark.parametrize(
        ("settings", "message"),
        [
            ({"top_n": 0}, "top_n must be an integer >= 1"),
            ({"min_score": -0.1}, r"min_score must lie in \[0, 1\]"),
            ({"batch_size": 0}, "batch_size must be an integer >= 1"),
            ({"scorer": object()}, "scorer must implement ce_rerank.Scorer"),
            ({"quantize": "int8", "dtype": "bfloat16"}, "quantize='int8' quantises float32 activations"),
        ],
    )
    def test_bad_settings_fail_at_construction(self, settings: dict[str, Any], message: str) -> None:
        with pytest.raises(ValueError, match=message):
            self.make(**settings)

    def test_unknown_settings_are_refused(self) -> None:
        with pytest.raises(ValueError, match="topn"):
            self.make(topn=3)

    def test_same_settings_by_the_same_names(self) -> None:
        adapter = self.make(
            model="m",
            top_n=7,
            min_score=0.2,
            batch_size=8,
            max_length=256,
            device="cpu",
            long_text="truncate",
            fusion="rrf",
            rrf_k=30,
            quantize="int8",
        )
        assert (adapter.quantize, adapter.backend) == ("int8", "auto")  # auto: OpenVINO where it is installed
        assert (adapter.model, adapter.top_n, adapter.min_score, adapter.batch_size) == ("m", 7, 0.2, 8)
        assert (adapter.max_length, adapter.device, adapter.long_text, adapter.fusion, adapter.rrf_k) == (
            256,
            "cpu",
            "truncate",
            "rrf",
            30,
        )
