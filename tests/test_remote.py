"""RemoteScorer against a stdlib fake server on 127.0.0.1: wire formats, batching, secrets, faults.

Every fault of issue 6 is tested in both ``on_error`` modes, through the core and through
both adapters' ``scorer=`` setting. Real engines (vLLM, Infinity) are in test_remote_engines.py.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fake_rerank_server import FakeRerankServer, Fault, fake_logit, fake_relevance, free_port

from ce_rerank import Reranker, Scorer, ScorerError
from ce_rerank._http import redact_url
from ce_rerank._remote import RemoteScorer
from ce_rerank._wire import logit

pytest.importorskip("httpx")
pytest.importorskip("tenacity")

QUERY = "what is the capital of France?"
DOCS = [
    "Paris is the capital and largest city of France.",
    "Bananas are yellow fruit.",
    "The Eiffel Tower is in Paris.",
    "Lyon is a city in France.",
    "Berlin is the capital of Germany.",
    "Cross-encoders read the query and the passage together.",
]
SECRET = "sk-test-9f8e7d6c5b4a"
OnError = Literal["raise", "passthrough"]


@pytest.fixture
def server() -> Iterator[FakeRerankServer]:
    with FakeRerankServer() as s:
        yield s


def remote(server: FakeRerankServer, **kwargs: Any) -> RemoteScorer:
    kwargs.setdefault("backoff", 0.01)
    kwargs.setdefault("max_retries", 2)
    kwargs.setdefault("timeout", 5.0)
    return RemoteScorer(server.url, **kwargs)


def expected_order(query: str, docs: list[str]) -> list[int]:
    return sorted(range(len(docs)), key=lambda i: (-fake_logit(query, docs[i]), i))


# -- construction, repr, secrets -----------------------------------------------------------


def test_remote_scorer_implements_the_scorer_protocol(server: FakeRerankServer) -> None:
    assert isinstance(remote(server), Scorer)


def test_repr_and_name_never_show_the_api_key_or_url_credentials() -> None:
    scorer = RemoteScorer("https://user:hunter2@rerank.example.com:8443/v1?token=abc", api_key=SECRET, path="/rerank")
    assert SECRET not in repr(scorer)
    assert "hunter2" not in repr(scorer) and "abc" not in repr(scorer)
    assert "SecretStr('**********')" in repr(scorer)
    assert scorer.name == "https://rerank.example.com:8443/v1/rerank"
    assert RemoteScorer("http://h:1", model="m").name == "m"
    assert SECRET not in str(vars(scorer).get("_api_key"))


def test_redact_url_drops_user_info_query_and_fragment() -> None:
    assert redact_url("http://a:b@[::1]:80/x?k=v#f") == "http://[::1]:80/x"


def test_api_key_is_sent_as_bearer_token(server: FakeRerankServer) -> None:
    server.api_key = SECRET
    with remote(server, api_key=SECRET) as scorer:
        assert len(scorer.score(QUERY, DOCS[:2])) == 2
    assert server.requests[0]["headers"]["Authorization"] == f"Bearer {SECRET}"


def test_wrong_api_key_is_a_401_naming_the_fix_without_the_key(server: FakeRerankServer) -> None:
    server.api_key = "the-right-key"
    with remote(server, api_key=SECRET) as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:2])
    assert "HTTP 401" in str(info.value) and "invalid API key" in str(info.value) and "check api_key" in str(info.value)
    assert SECRET not in str(info.value)
    assert server.posts == 1  # a 4xx is not retried


def test_a_server_echoing_the_api_key_in_its_error_does_not_leak_it(server: FakeRerankServer) -> None:
    server.plan(Fault.error(403, {"detail": f"key {SECRET} has no access"}))
    with remote(server, api_key=SECRET) as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:2])
    assert SECRET not in str(info.value)
    assert "has no access" in str(info.value)


def test_tls_verification_is_on_by_default() -> None:
    import ssl

    scorer = RemoteScorer("https://127.0.0.1:1")
    assert scorer.verify is True
    client = scorer._sync_client()
    try:
        ctx = client._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    finally:
        scorer.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"url": ""}, "url must be the server's base URL, e.g. 'http://127.0.0.1:7997'"),
        ({"url": "ftp://x"}, "url must be an http:// or https:// URL with a host, got 'ftp://x'"),
        ({"api": "cohere"}, "api must be 'rerank' (Cohere/Jina/vLLM/Infinity) or 'tei', got 'cohere'"),
        ({"path": "rerank"}, "path must start with '/', e.g. '/v1/rerank', got 'rerank'"),
        ({"max_batch": 0}, "max_batch must be an integer >= 1, got 0"),
        ({"max_retries": -1}, "max_retries must be an integer >= 0, got -1"),
        ({"timeout": 0}, "timeout must be > 0 seconds"),
        ({"model": " "}, "model must be a non-empty model name, or None to let the server choose"),
    ],
)
def test_bad_settings_raise_naming_the_fix(kwargs: dict[str, Any], message: str) -> None:
    kwargs = {"url": "http://127.0.0.1:1", **kwargs}
    with pytest.raises(ValueError) as info:
        RemoteScorer(**kwargs)
    assert str(info.value) == message


def test_missing_httpx_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "httpx", None)
    with pytest.raises(ImportError, match=r'pip install "ce-rerank\[remote\]"'):
        RemoteScorer("http://127.0.0.1:1")


def test_missing_tenacity_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tenacity", None)
    with pytest.raises(ImportError, match=r'pip install "ce-rerank\[remote\]"'):
        RemoteScorer("http://127.0.0.1:1")


# -- wire formats ----------------------------------------------------------------------------


def test_rerank_format_body_and_scores_mapped_back_by_index(server: FakeRerankServer) -> None:
    with remote(server, model="my-ce") as scorer:
        scores = scorer.score(QUERY, DOCS)
    body = server.requests[0]["body"]
    assert body == {"model": "my-ce", "query": QUERY, "documents": DOCS, "top_n": len(DOCS)}
    assert server.requests[0]["path"] == "/rerank"
    # the server answers best first: the client must map by index, not by position
    assert scores.relevance == pytest.approx([fake_relevance(QUERY, d) for d in DOCS], abs=1e-12)
    assert scores.raw == pytest.approx([fake_logit(QUERY, d) for d in DOCS], abs=1e-9)


def test_model_is_left_out_of_the_body_when_not_set(server: FakeRerankServer) -> None:
    with remote(server) as scorer:
        scorer.score(QUERY, DOCS[:1])
    assert "model" not in server.requests[0]["body"]


def test_tei_format_asks_for_raw_scores_and_applies_the_sigmoid(server: FakeRerankServer) -> None:
    with remote(server, api="tei") as scorer:
        scores = scorer.score(QUERY, DOCS)
    assert server.requests[0]["body"] == {"query": QUERY, "texts": DOCS, "raw_scores": True}
    assert scores.raw == [fake_logit(QUERY, d) for d in DOCS]
    assert scores.relevance == pytest.approx([fake_relevance(QUERY, d) for d in DOCS], abs=1e-12)


@pytest.mark.parametrize("path", ["/v1/rerank", "/v2/rerank"])
def test_path_is_configurable(server: FakeRerankServer, path: str) -> None:
    with remote(server, path=path) as scorer:
        scorer.score(QUERY, DOCS[:1])
    assert server.requests[0]["path"] == path


def test_a_url_ending_in_rerank_is_the_endpoint(server: FakeRerankServer) -> None:
    with RemoteScorer(server.url + "/v2/rerank") as scorer:
        scorer.score(QUERY, DOCS[:1])
    assert server.requests[0]["path"] == "/v2/rerank"


@pytest.mark.parametrize("api", ["rerank", "tei"])
def test_calls_are_split_to_the_batch_limit_and_merged(api: str) -> None:
    docs = [f"document number {i} about {'Paris' if i % 3 else 'bananas'}" for i in range(70)]
    with FakeRerankServer(max_batch=32) as server, remote(server, api=api) as scorer:
        scores = scorer.score(QUERY, docs)
        sizes = [len(r["body"]["texts" if api == "tei" else "documents"]) for r in server.requests]
    assert sizes == [32, 32, 6]
    assert scores.batches == 3 and scores.pairs == 70
    assert scores.raw == pytest.approx([fake_logit(QUERY, d) for d in docs], abs=1e-9)


def test_without_splitting_a_batch_over_the_server_limit_gets_its_413_message() -> None:
    with FakeRerankServer(max_batch=32) as server, remote(server, api="tei", max_batch=64) as scorer:
        with pytest.raises(ScorerError) as info:
            scorer.score(QUERY, [f"d{i}" for i in range(40)])
    assert "HTTP 413" in str(info.value)
    assert "batch size 40 > maximum allowed batch size 32" in str(info.value)
    assert "lower max_batch=" in str(info.value)


async def test_async_splits_and_merges_with_bounded_parallel_requests() -> None:
    docs = [f"doc {i}" for i in range(50)]
    with FakeRerankServer(max_batch=8) as server:
        async with remote(server, max_batch=8, max_parallel=3) as scorer:
            scores = await scorer.ascore(QUERY, docs)
    assert scores.raw == pytest.approx([fake_logit(QUERY, d) for d in docs], abs=1e-9)
    assert server.posts == 7


async def test_ascore_uses_the_async_http_client_not_a_thread(server: FakeRerankServer) -> None:
    scorer = remote(server)
    try:
        scores = await scorer.ascore(QUERY, DOCS)
        assert scorer._client is None  # the sync client was never opened
        assert len(scorer._aclients) == 1
        assert scores.raw == pytest.approx([fake_logit(QUERY, d) for d in DOCS], abs=1e-9)
    finally:
        await scorer.aclose()


async def test_concurrent_async_calls_overlap_on_one_event_loop() -> None:
    with FakeRerankServer() as server:
        server.plan(*[Fault.sleep(0.3)] * 20)
        async with remote(server) as scorer:
            start = time.perf_counter()
            results = await asyncio.gather(*(scorer.ascore(QUERY, [f"d{i}"]) for i in range(20)))
            elapsed = time.perf_counter() - start
    assert [r.raw[0] for r in results] == pytest.approx([fake_logit(QUERY, f"d{i}") for i in range(20)])
    assert elapsed < 3.0  # 20 x 0.3 s = 6 s if they ran one after another


def test_clients_are_reused_and_reopened_after_close(server: FakeRerankServer) -> None:
    scorer = remote(server)
    scorer.score(QUERY, DOCS[:1])
    first = scorer._client
    scorer.score(QUERY, DOCS[:1])
    assert scorer._client is first
    scorer.close()
    assert scorer._client is None
    scorer.score(QUERY, DOCS[:1])
    assert scorer._client is not None and scorer._client is not first
    scorer.close()


def test_empty_input_sends_nothing(server: FakeRerankServer) -> None:
    with remote(server) as scorer:
        assert len(scorer.score(QUERY, [])) == 0
    assert server.posts == 0


def test_lone_surrogates_travel_as_replacement_characters(server: FakeRerankServer) -> None:
    docs = ["ok \ud800 broken", "pair \U0001f600 fine"]
    with remote(server) as scorer:
        scores = scorer.score(QUERY, docs)
    sent = server.requests[0]["body"]["documents"]
    assert sent == ["ok \ufffd broken", "pair \U0001f600 fine"]
    assert len(scores) == 2


def test_logit_inverts_the_sigmoid_and_is_clamped() -> None:
    assert logit(fake_relevance("q", "d")) == pytest.approx(fake_logit("q", "d"), abs=1e-9)
    assert logit(1.0) == pytest.approx(27.631, abs=1e-3)
    assert logit(0.0) == pytest.approx(-27.631, abs=1e-3)


def test_relevance_outside_0_1_is_rejected_naming_the_fix(server: FakeRerankServer) -> None:
    server.plan(Fault.error(200, {"results": [{"index": 0, "relevance_score": 3.5}]}))
    with remote(server) as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:1])
    assert "relevance_score 3.5 is outside [0, 1]" in str(info.value) and "api='tei'" in str(info.value)


def test_duplicate_result_index_is_an_error(server: FakeRerankServer) -> None:
    server.plan("duplicate_index")
    with remote(server) as scorer, pytest.raises(ScorerError, match="appears twice"):
        scorer.score(QUERY, DOCS[:3])


def test_fastapi_validation_errors_keep_the_message_and_drop_the_echoed_input(server: FakeRerankServer) -> None:
    detail = [
        {
            "loc": ["body", "documents", 0],
            "msg": "String should have at most 10 characters",
            "input": "MARKER-document-text",
        }
    ]
    server.plan(Fault.error(422, {"detail": detail}))
    with remote(server) as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:1])
    assert "documents.0: String should have at most 10 characters" in str(info.value)
    assert "MARKER" not in str(info.value)


# -- faults: through the core, the LangChain adapter and the LlamaIndex adapter -------------------


def _dead_url() -> str:
    return f"http://127.0.0.1:{free_port()}"


class Via:
    """Runs one rerank call through the core or an adapter; returns (texts in output order, error flags)."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name

    def run(
        self, scorer: RemoteScorer, on_error: OnError, docs: list[str], *, use_async: bool = False
    ) -> tuple[list[str], list[Any], list[Any]]:
        def arun(coro: Any) -> Any:
            async def main() -> Any:
                try:
                    return await coro
                finally:
                    await scorer.aclose()  # the async client belongs to this event loop

            return asyncio.run(main())

        if self.name == "core":
            reranker = Reranker(scorer, top_n=None, on_error=on_error)
            ranked = arun(reranker.arerank(QUERY, docs)) if use_async else reranker.rerank(QUERY, docs)
            texts = [docs[c.index] for c in ranked]
            return texts, [c.rerank_error for c in ranked], [c.relevance_score for c in ranked]
        if self.name == "langchain":
            from langchain_core.documents import Document

            from langchain_ce_rerank import CrossEncoderRerank

            lc = CrossEncoderRerank(scorer=scorer, top_n=None, on_error=on_error)
            inputs = [Document(page_content=d, metadata={"source": i}) for i, d in enumerate(docs)]
            out = arun(lc.acompress_documents(inputs, QUERY)) if use_async else lc.compress_documents(inputs, QUERY)
            assert all("rerank_error" not in d.metadata for d in inputs)  # inputs untouched
            return (
                [d.page_content for d in out],
                [d.metadata.get("rerank_error") for d in out],
                [d.metadata.get("relevance_score") for d in out],
            )
        from llama_index.core.schema import NodeWithScore, TextNode

        from llamaindex_ce_rerank import CrossEncoderRerank as LiRerank

        li = LiRerank(scorer=scorer, top_n=None, on_error=on_error)
        nodes = [NodeWithScore(node=TextNode(text=d), score=1.0 - i / 10) for i, d in enumerate(docs)]
        out_nodes = (
            arun(li.apostprocess_nodes(nodes, query_str=QUERY))
            if use_async
            else li.postprocess_nodes(nodes, query_str=QUERY)
        )
        return (
            [n.node.get_content() for n in out_nodes],
            [n.node.metadata.get("rerank_error") for n in out_nodes],
            [n.node.metadata.get("relevance_score") for n in out_nodes],
        )


VIAS = [Via("core"), Via("langchain"), Via("llamaindex")]

# (fault id, how to make it, a fragment the error message must contain)
FaultSetup = Callable[[FakeRerankServer], str]


def _fault_down(server: FakeRerankServer) -> str:
    server.close()
    return _dead_url()


def _fault_killed_mid_run(server: FakeRerankServer) -> str:
    server.plan(Fault.ok(), Fault("kill"))  # the first of three requests succeeds, then the server dies
    return server.url


def _fault_plan(*faults: Fault | str) -> FaultSetup:
    def setup(server: FakeRerankServer) -> str:
        server.plan(*faults)
        return server.url

    return setup


FATAL_FAULTS: list[tuple[str, FaultSetup, str]] = [
    ("server_down", _fault_down, "gave up after 3 attempts: connection failed (ConnectError"),
    ("killed_mid_run", _fault_killed_mid_run, "gave up after 3 attempts: connection failed"),
    ("slower_than_timeout", _fault_plan(Fault.sleep(3.0)), "did not answer within timeout=0.5 s (ReadTimeout)"),
    ("malformed_json", _fault_plan("malformed"), "the answer is not valid JSON"),
    ("too_few_results", _fault_plan("too_few"), "sent 2 documents but got 1 results"),
    ("index_out_of_range", _fault_plan("index_out_of_range"), "result index 2 is out of range for 2 documents"),
    (
        "client_error_4xx",
        _fault_plan(Fault.error(400, {"detail": "query exceeds 64 tokens for model tiny-ce"})),
        "HTTP 400 from the server: query exceeds 64 tokens for model tiny-ce",
    ),
]


def _scorer_for(url: str) -> RemoteScorer:
    return RemoteScorer(url, max_batch=2, max_retries=2, backoff=0.01, timeout=0.5)


@pytest.mark.parametrize("via", VIAS, ids=str)
@pytest.mark.parametrize(("fault", "setup", "message"), FATAL_FAULTS, ids=[f[0] for f in FATAL_FAULTS])
def test_fault_raises_scorer_error_with_on_error_raise(
    server: FakeRerankServer, via: Via, fault: str, setup: FaultSetup, message: str
) -> None:
    with _scorer_for(setup(server)) as scorer, pytest.raises(ScorerError) as info:
        via.run(scorer, "raise", DOCS[:4] if fault == "killed_mid_run" else DOCS[:2])
    assert message in str(info.value)


@pytest.mark.parametrize("via", VIAS, ids=str)
@pytest.mark.parametrize(("fault", "setup", "message"), FATAL_FAULTS, ids=[f[0] for f in FATAL_FAULTS])
def test_fault_passes_the_retriever_order_through_flagged_with_on_error_passthrough(
    server: FakeRerankServer,
    via: Via,
    fault: str,
    setup: FaultSetup,
    message: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    docs = DOCS[:4] if fault == "killed_mid_run" else DOCS[:2]
    with caplog.at_level(logging.WARNING, logger="ce_rerank"), _scorer_for(setup(server)) as scorer:
        texts, errors, scores = via.run(scorer, "passthrough", docs)
    assert texts == docs  # the retriever's order, nothing dropped
    assert all(e is not None and message in e for e in errors)
    assert scores == [None] * len(docs)
    warnings = [
        r for r in caplog.records if r.levelno == logging.WARNING and "on_error='passthrough'" in r.getMessage()
    ]
    assert len(warnings) == 1 and message in warnings[0].getMessage()


@pytest.mark.parametrize("via", VIAS, ids=str)
@pytest.mark.parametrize("on_error", ["raise", "passthrough"])
def test_server_error_then_success_is_retried_and_scores(server: FakeRerankServer, via: Via, on_error: OnError) -> None:
    server.plan(Fault.error(500, {"error": "CUDA out of memory"}), Fault.error(503, "busy"), Fault.ok())
    with _scorer_for(server.url) as scorer:
        texts, errors, scores = via.run(scorer, on_error, DOCS[:2])
    assert texts == [DOCS[:2][i] for i in expected_order(QUERY, DOCS[:2])]
    assert errors == [None, None]
    assert scores == pytest.approx(sorted((fake_relevance(QUERY, d) for d in DOCS[:2]), reverse=True))
    assert server.posts == 3


@pytest.mark.parametrize("via", VIAS, ids=str)
@pytest.mark.parametrize("on_error", ["raise", "passthrough"])
def test_429_waits_as_retry_after_says_then_scores(server: FakeRerankServer, via: Via, on_error: OnError) -> None:
    server.plan(Fault.error(429, {"message": "slow down"}, retry_after="1"), Fault.ok())
    with _scorer_for(server.url) as scorer:
        start = time.perf_counter()
        texts, errors, _ = via.run(scorer, on_error, DOCS[:2])
        elapsed = time.perf_counter() - start
    assert elapsed >= 1.0  # the backoff alone would be 0.01 s
    assert texts == [DOCS[:2][i] for i in expected_order(QUERY, DOCS[:2])]
    assert errors == [None, None]
    assert server.posts == 2


def test_500_retries_are_bounded_and_the_last_message_is_kept(server: FakeRerankServer) -> None:
    server.plan(*[Fault.error(500, {"error": "model crashed"})] * 10)
    with _scorer_for(server.url) as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:2])
    assert "gave up after 3 attempts: HTTP 500: model crashed" in str(info.value)
    assert server.posts == 3


def test_retry_after_longer_than_max_wait_fails_at_once(server: FakeRerankServer) -> None:
    server.plan(Fault.error(429, "quota", retry_after="3600"))
    with remote(server, max_wait=10) as scorer, pytest.raises(ScorerError) as info:
        scorer.score(QUERY, DOCS[:2])
    assert "retry after 3600 s, longer than max_wait=10 s" in str(info.value)
    assert server.posts == 1


@pytest.mark.parametrize("fault", ["malformed", "too_few", "index_out_of_range"])
def test_unusable_answers_are_not_retried(server: FakeRerankServer, fault: str) -> None:
    server.plan(fault)
    with remote(server) as scorer, pytest.raises(ScorerError):
        scorer.score(QUERY, DOCS[:2])
    assert server.posts == 1


def test_a_dropped_connection_is_retried(server: FakeRerankServer) -> None:
    server.plan("drop", Fault.ok())
    with remote(server) as scorer:
        scores = scorer.score(QUERY, DOCS[:2])
    assert scores.raw == pytest.approx([fake_logit(QUERY, d) for d in DOCS[:2]])
    assert server.posts == 2


def test_a_timeout_is_not_retried_and_fails_fast(server: FakeRerankServer) -> None:
    server.plan(Fault.sleep(3.0))
    with remote(server, timeout=0.3, max_retries=3) as scorer:
        start = time.perf_counter()
        with pytest.raises(ScorerError, match=r"did not answer within timeout=0\.3 s"):
            scorer.score(QUERY, DOCS[:2])
    assert time.perf_counter() - start < 2.0
    assert server.posts == 1


@pytest.mark.parametrize("via", VIAS, ids=str)
def test_async_paths_pass_a_dead_server_through_flagged(via: Via) -> None:
    with _scorer_for(_dead_url()) as scorer:
        texts, errors, _ = via.run(scorer, "passthrough", DOCS[:3], use_async=True)
    assert texts == DOCS[:3]
    assert all(e and "connection failed" in e for e in errors)


@pytest.mark.parametrize("via", VIAS, ids=str)
def test_async_paths_raise_a_4xx_message_with_on_error_raise(server: FakeRerankServer, via: Via) -> None:
    server.plan(Fault.error(404, {"error": {"message": "The model `x` does not exist.", "code": 404}}))
    with _scorer_for(server.url) as scorer, pytest.raises(ScorerError) as info:
        via.run(scorer, "raise", DOCS[:2], use_async=True)
    assert "HTTP 404 from the server: The model `x` does not exist." in str(info.value)


def test_a_server_process_killed_during_a_request_gives_a_scorer_error() -> None:
    script = Path(__file__).with_name("fake_rerank_server.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--sleep", "30", "--lifetime", "60"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline().split()[1])
        scorer = RemoteScorer(f"http://127.0.0.1:{port}", max_retries=1, backoff=0.01, timeout=20)

        async def call_then_kill() -> None:
            task = asyncio.ensure_future(scorer.ascore(QUERY, DOCS[:2]))
            line = await asyncio.to_thread(proc.stdout.readline)  # type: ignore[union-attr]
            assert line.strip() == "REQUEST"
            proc.kill()
            try:
                with pytest.raises(ScorerError, match="gave up after 2 attempts: connection failed"):
                    await task
            finally:
                await scorer.aclose()

        start = time.perf_counter()
        asyncio.run(call_then_kill())
        assert time.perf_counter() - start < 10.0  # not the 20 s timeout: the dead server is noticed
    finally:
        proc.kill()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_ca_bundle_path_is_loaded_into_the_tls_context(tmp_path: Path) -> None:
    import ssl

    bundle = Path(ssl.get_default_verify_paths().cafile or "/etc/ssl/certs/ca-certificates.crt")
    if not bundle.exists():
        pytest.skip("no CA bundle on this machine")
    scorer = RemoteScorer("https://127.0.0.1:1", verify=str(bundle))
    try:
        ctx = scorer._sync_client()._transport._pool._ssl_context  # type: ignore[attr-defined]
        assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.cert_store_stats()["x509_ca"] > 0
    finally:
        scorer.close()
