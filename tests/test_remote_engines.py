"""RemoteScorer against real serving engines on 127.0.0.1: Infinity and vLLM.

Each engine lives in its own virtualenv (scripts/engines/setup_infinity.sh,
scripts/engines/setup_vllm.sh) and is enabled by an environment variable naming that
virtualenv's interpreter:

    CE_RERANK_INFINITY_PYTHON=/path/to/infinity-venv/bin/python
    CE_RERANK_VLLM_PYTHON=/path/to/vllm-venv/bin/python

Unset, the engine's tests skip. Set, the tests start the engine themselves on a free
127.0.0.1 port (scripts/engines/serve_*.sh) serving a MiniLM-L6 cross-encoder built
offline, wait for its health check (bounded), compare its scores with the in-process
``CrossEncoderScorer`` on the same model directory, and stop it.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from fake_rerank_server import free_port

from ce_rerank import CrossEncoderScorer, Reranker, ScorerError

httpx = pytest.importorskip("httpx")
pytest.importorskip("tenacity")

from ce_rerank._remote import RemoteScorer  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ENGINES = {
    "infinity": ("CE_RERANK_INFINITY_PYTHON", ROOT / "scripts" / "engines" / "serve_infinity.sh", 120.0),
    "vllm": ("CE_RERANK_VLLM_PYTHON", ROOT / "scripts" / "engines" / "serve_vllm.sh", 300.0),
}
SERVED_NAME = "minilm-ce"
API_KEY = "ce-rerank-test-key-4b1d"
QUERY = "what is the capital of France?"
DOCS = [
    "Paris is the capital and most populous city of France.",
    "Bananas are a yellow fruit rich in potassium.",
    "The Eiffel Tower was completed in 1889 for the World's Fair in Paris.",
    "Lyon is the third-largest city of France, known for its cuisine.",
    "Berlin is the capital of Germany.",
    "France is a country in Western Europe; its capital is Paris.",
    "Cross-encoders read the query and the passage together with full attention.",
    "The Seine flows through Paris before reaching the English Channel.",
    "Madrid is the capital of Spain.",
    "Reciprocal rank fusion combines several ranked lists.",
    "Émojis like 🙂 appear in user text; so does right-to-left text: مرحبا بالعالم.",
    "Paris " * 60,
    "a",
    "The French Republic's seat of government is in Paris, in the Île-de-France region.",
]


@pytest.fixture(scope="module")
def engine_model_dir(minilm_model_dir: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The MiniLM cross-encoder with its random head scaled up, so scores spread over several logits."""
    from safetensors.torch import load_file, save_file

    out = tmp_path_factory.mktemp("engine-minilm-ce")
    for item in Path(minilm_model_dir).iterdir():
        shutil.copy(item, out / item.name)
    weights = load_file(str(out / "model.safetensors"))
    weights["classifier.weight"] = weights["classifier.weight"] * 100.0
    save_file(weights, str(out / "model.safetensors"), metadata={"format": "pt"})
    return str(out)


@dataclass
class Engine:
    name: str
    url: str
    model_dir: str
    log: Path

    def scorer(self, **kwargs: object) -> RemoteScorer:
        kwargs.setdefault("model", SERVED_NAME)
        kwargs.setdefault("api_key", API_KEY)
        kwargs.setdefault("timeout", 60.0)
        return RemoteScorer(self.url, **kwargs)  # type: ignore[arg-type]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the engine and every process it started (its own session)."""
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture(scope="module", params=sorted(ENGINES))
def engine(
    request: pytest.FixtureRequest, engine_model_dir: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engine]:
    env_var, script, startup_limit = ENGINES[request.param]
    python = os.environ.get(env_var)
    if not python:
        pytest.skip(f"{env_var} is not set (scripts/engines/setup_{request.param}.sh makes the virtualenv)")
    if not Path(python).exists():
        pytest.fail(f"{env_var}={python} does not exist: run scripts/engines/setup_{request.param}.sh first")
    port = free_port()
    log = tmp_path_factory.mktemp(f"{request.param}-log") / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            ["bash", str(script), python, engine_model_dir, str(port), SERVED_NAME, API_KEY],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        start = time.monotonic()
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{request.param} exited with {proc.returncode} before it was healthy:\n{_tail(log)}")
            try:
                if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() - start > startup_limit:
                pytest.fail(f"{request.param} was not healthy after {startup_limit:.0f} s:\n{_tail(log)}")
            time.sleep(0.5)
        print(f"{request.param} healthy after {time.monotonic() - start:.1f} s")
        yield Engine(request.param, url, engine_model_dir, log)
    finally:
        _stop(proc)


def _tail(log: Path, lines: int = 40) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


@pytest.fixture(scope="module")
def local_scores(engine_model_dir: str) -> tuple[list[float], list[float]]:
    # exact float32, as the engines serve it (dtype="auto" may pick bfloat16 on this CPU)
    scores = CrossEncoderScorer(engine_model_dir, device="cpu", dtype="float32").score(QUERY, DOCS)
    return scores.relevance, scores.raw


def _order(values: list[float]) -> list[int]:
    return sorted(range(len(values)), key=lambda i: (-values[i], i))


def test_remote_scores_equal_local_scores_and_orders_match(
    engine: Engine, local_scores: tuple[list[float], list[float]]
) -> None:
    relevance, raw = local_scores
    assert max(raw) - min(raw) > 1.0  # a spread of scores, so the order comparison means something
    with engine.scorer() as scorer:
        remote = scorer.score(QUERY, DOCS)
    assert remote.relevance == pytest.approx(relevance, abs=1e-4)
    assert remote.raw == pytest.approx(raw, abs=1e-3)
    assert _order(remote.relevance) == _order(relevance)


async def test_async_split_into_small_requests_equals_local(
    engine: Engine, local_scores: tuple[list[float], list[float]]
) -> None:
    async with engine.scorer(max_batch=4) as scorer:
        remote = await scorer.ascore(QUERY, DOCS)
    assert remote.batches == 4
    assert remote.relevance == pytest.approx(local_scores[0], abs=1e-4)


def test_both_adapters_rank_remote_like_local(engine: Engine) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from langchain_ce_rerank import CrossEncoderRerank as LcRerank
    from llamaindex_ce_rerank import CrossEncoderRerank as LiRerank

    docs = [Document(page_content=d, id=str(i)) for i, d in enumerate(DOCS)]
    nodes = [NodeWithScore(node=TextNode(text=d, id_=str(i)), score=0.5) for i, d in enumerate(DOCS)]
    with engine.scorer() as scorer:
        lc_remote = LcRerank(scorer=scorer, top_n=5).compress_documents(docs, QUERY)
        li_remote = LiRerank(scorer=scorer, top_n=5).postprocess_nodes(nodes, query_str=QUERY)
    lc_local = LcRerank(model=engine.model_dir, device="cpu", dtype="float32", top_n=5).compress_documents(docs, QUERY)
    li_local = LiRerank(model=engine.model_dir, device="cpu", dtype="float32", top_n=5).postprocess_nodes(
        nodes, query_str=QUERY
    )
    assert [d.id for d in lc_remote] == [d.id for d in lc_local]
    assert [n.node.node_id for n in li_remote] == [n.node.node_id for n in li_local]
    for got, want in zip(lc_remote, lc_local, strict=True):
        assert got.metadata["relevance_score"] == pytest.approx(want.metadata["relevance_score"], abs=1e-4)


def _protected_path(engine: Engine) -> str:
    # vLLM's --api-key guards only the /v1 routes: its /rerank and /v2/rerank answer anyone.
    return "/v1/rerank" if engine.name == "vllm" else "/rerank"


def test_a_wrong_api_key_reaches_the_user_as_the_servers_401(engine: Engine) -> None:
    scorer = engine.scorer(api_key="not-the-key", path=_protected_path(engine))
    with scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:2])
    assert "HTTP 401" in str(info.value)
    assert "not-the-key" not in str(info.value)


def test_passthrough_keeps_the_retriever_order_when_the_engine_refuses(engine: Engine) -> None:
    with engine.scorer(api_key="not-the-key", path=_protected_path(engine)) as scorer:
        ranked = Reranker(scorer, top_n=3, on_error="passthrough").rerank(QUERY, DOCS)
    assert [c.index for c in ranked] == list(range(len(DOCS)))
    assert all(c.rerank_error and "HTTP 401" in c.rerank_error for c in ranked)


def test_vllm_rejects_an_unknown_model_and_says_so(engine: Engine) -> None:
    if engine.name != "vllm":
        pytest.skip("Infinity serves its only model under any name")
    with engine.scorer(model="no-such-model") as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:2])
    assert "HTTP 404" in str(info.value) and "no-such-model" in str(info.value)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_vllm_versioned_rerank_paths_give_the_same_scores(
    engine: Engine, path: str, local_scores: tuple[list[float], list[float]]
) -> None:
    if engine.name != "vllm":
        pytest.skip("only vLLM serves /v1/rerank and /v2/rerank")
    with engine.scorer(path=path) as scorer:
        assert scorer.score(QUERY, DOCS).relevance == pytest.approx(local_scores[0], abs=1e-4)
