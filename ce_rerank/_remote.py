"""``RemoteScorer``: score (query, text) pairs on a serving engine over HTTP.

It speaks the rerank wire formats of existing engines, so that scaling out is the
engine's job (vLLM replicas, Infinity or TEI behind a load balancer) and the client side
is one line of configuration:

- ``api="rerank"`` (Cohere v2, Jina, vLLM ``/rerank``, ``/v1/rerank``, ``/v2/rerank``,
  Infinity ``/rerank``): ``{model, query, documents, top_n}`` ->
  ``{results: [{index, relevance_score}]}``.
- ``api="tei"`` (Hugging Face text-embeddings-inference ``/rerank``):
  ``{query, texts, raw_scores: true}`` -> ``[{index, score}]``.

Request bodies and answers are built and read in ``_wire``; this module is the transport: clients,
retries, batching. httpx and tenacity are optional dependencies (the ``remote`` extra), imported lazily.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import SecretStr

from ._http import parse_retry_after, redact_url, server_message
from ._local import check_inputs
from ._scores import Scores
from ._wire import Api, WireError, parse_answer, request_body
from .exceptions import ScorerError

if TYPE_CHECKING:
    import httpx
    import tenacity

__all__ = ["RemoteScorer"]

logger = logging.getLogger("ce_rerank")

_NOT_RETRIED_5XX = {501, 505}  # "not implemented", "version not supported": retrying cannot help


def _import_httpx() -> Any:
    try:
        import httpx
    except ImportError as exc:
        raise ImportError('RemoteScorer needs httpx and tenacity: pip install "ce-rerank[remote]"') from exc
    return httpx


def _import_tenacity() -> Any:
    try:
        import tenacity
    except ImportError as exc:
        raise ImportError('RemoteScorer needs httpx and tenacity: pip install "ce-rerank[remote]"') from exc
    return tenacity


class _Retryable(Exception):
    """An attempt failed in a way worth retrying (connection error, 429, 5xx)."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RemoteScorer:
    """Scores (query, text) pairs on a rerank server: vLLM, Infinity, TEI, Cohere, Jina.

    Args:
        url: the server's base URL (``http://127.0.0.1:7997``); ``path`` is appended. A URL
            whose path already ends in ``rerank`` is used as the endpoint when ``path`` is None.
        model: the model name sent in the body (``api="rerank"``); omitted when None (vLLM
            and Infinity then use the model they serve). Also the scorer's ``name``.
        api: ``"rerank"`` for ``{model, query, documents, top_n}`` ->
            ``{results: [{index, relevance_score}]}``; ``"tei"`` for Hugging Face TEI's
            ``{query, texts, raw_scores}`` -> ``[{index, score}]``.
        path: the endpoint path: default ``/rerank`` (both formats); e.g. ``/v1/rerank`` or
            ``/v2/rerank`` for vLLM and Cohere.
        api_key: sent as ``Authorization: Bearer <key>``; kept as a secret, never shown in
            ``repr``, logs or exception text.
        max_batch: most documents per request; a call is split into requests of at most
            this many documents and the results merged (TEI's default limit is 32).
        timeout: seconds for connecting, sending and waiting for an answer (each request).
        max_retries: retries after the first attempt, with exponential backoff, on
            connection errors, HTTP 429 (waiting as its ``Retry-After`` says) and 5xx.
            Other 4xx, timeouts waiting for an answer and unusable answers are not retried.
        backoff: first backoff wait in seconds (doubling, with jitter, up to ``max_wait``).
        max_wait: the longest wait between attempts; a ``Retry-After`` longer than this
            fails the call at once instead of blocking it.
        max_parallel: most requests of one async call in flight at once.
        max_connections: most requests in flight at once from this scorer (across threads for
            sync calls, per event loop for async ones), and the size of its connection pool;
            further requests wait their turn (they never pile up inside the HTTP pool).
        verify: TLS certificate verification (on by default): ``True``, ``False``, a CA
            bundle path or an ``ssl.SSLContext``.
        headers: extra HTTP headers for every request.

    Scores: ``api="rerank"`` servers return a probability (vLLM and Infinity apply the
    sigmoid to a one-output cross-encoder, the softmax to a two-output one): it becomes
    ``relevance_score`` as is, and ``ce_raw_score`` is its logit (inverse sigmoid, the
    probability clamped to ``[1e-12, 1 - 1e-12]``), which for both kinds of model equals
    the local scorer's raw score up to float32 rounding of the probability. ``api="tei"``
    asks for raw scores: ``ce_raw_score`` is the logit, ``relevance_score`` its sigmoid.
    Long documents are cut or rejected by the server's own rules: the local scorer's
    windowing does not apply. Texts travel as UTF-8: lone surrogates become U+FFFD.

    Clients: one ``httpx.Client`` for sync calls (shared by threads) and one
    ``httpx.AsyncClient`` per event loop for async calls (real async I/O, no threads), each
    opened on first use and reused. ``close()`` closes the sync one; ``await aclose()`` (or
    ``async with scorer``) closes the current loop's, and belongs before that loop ends.

    Example:
        >>> from ce_rerank import RemoteScorer  # doctest: +SKIP
        >>> scorer = RemoteScorer("http://127.0.0.1:7997", model="ms-marco-MiniLM-L-6-v2")  # doctest: +SKIP
        >>> scorer.score("capital of France", ["Paris is the capital.", "Bananas."]).relevance  # doctest: +SKIP
        [0.99, 0.0001]
    """

    def __init__(
        self,
        url: str,
        *,
        model: str | None = None,
        api: Api = "rerank",
        path: str | None = None,
        api_key: str | SecretStr | None = None,
        max_batch: int = 32,
        timeout: float = 30.0,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_wait: float = 60.0,
        max_parallel: int = 4,
        max_connections: int = 32,
        verify: bool | str | ssl.SSLContext = True,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ValueError("url must be the server's base URL, e.g. 'http://127.0.0.1:7997'")
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"url must be an http:// or https:// URL with a host, got {redact_url(url)!r}")
        if api not in ("rerank", "tei"):
            raise ValueError(f"api must be 'rerank' (Cohere/Jina/vLLM/Infinity) or 'tei', got {api!r}")
        if model is not None and (not isinstance(model, str) or not model.strip()):
            raise ValueError("model must be a non-empty model name, or None to let the server choose")
        if path is not None and (not isinstance(path, str) or not path.startswith("/")):
            raise ValueError(f"path must start with '/', e.g. '/v1/rerank', got {path!r}")
        for name, value, low in (
            ("max_batch", max_batch, 1),
            ("max_retries", max_retries, 0),
            ("max_parallel", max_parallel, 1),
            ("max_connections", max_connections, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        for name, fvalue in (("timeout", timeout), ("backoff", backoff), ("max_wait", max_wait)):
            if isinstance(fvalue, bool) or not isinstance(fvalue, (int, float)) or not fvalue >= 0:
                raise ValueError(f"{name} must be a number of seconds >= 0, got {fvalue!r}")
        if timeout == 0:
            raise ValueError("timeout must be > 0 seconds")
        if path is None and parts.path.rstrip("/").endswith("rerank"):
            self.endpoint = url.strip()
        else:  # append the path to the URL's path, keeping any query string
            full = parts.path.rstrip("/") + (path or "/rerank")
            self.endpoint = urlunsplit((parts.scheme, parts.netloc, full, parts.query, ""))
        self.url = redact_url(self.endpoint)
        self.model = model
        self.api: Api = api
        self._api_key = api_key if isinstance(api_key, SecretStr) or api_key is None else SecretStr(api_key)
        self.max_batch = max_batch
        self.timeout = float(timeout)
        self.max_retries = max_retries
        self.backoff = float(backoff)
        self.max_wait = float(max_wait)
        self.max_parallel = max_parallel
        self.max_connections = max_connections
        self.verify = verify
        self._extra_headers = dict(headers or {})
        self._lock = threading.Lock()
        self._client: httpx.Client | None = None
        self._slots = threading.BoundedSemaphore(max_connections)
        # One AsyncClient (and one semaphore) per event loop: an AsyncClient's connections
        # belong to the loop that opened them.
        self._aclients: weakref.WeakKeyDictionary[
            asyncio.AbstractEventLoop, tuple[httpx.AsyncClient, asyncio.Semaphore]
        ] = weakref.WeakKeyDictionary()
        _import_httpx()
        _import_tenacity()

    def __repr__(self) -> str:
        key = ", api_key=SecretStr('**********')" if self._api_key is not None else ""
        return f"RemoteScorer(url={self.url!r}, model={self.model!r}, api={self.api!r}{key})"

    @property
    def name(self) -> str:
        """The model name, or the endpoint URL without credentials."""
        return self.model or self.url

    # -- clients -----------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", **self._extra_headers}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return headers

    def _sync_client(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                httpx = _import_httpx()
                self._client = httpx.Client(**self._client_kwargs(httpx))
            return self._client

    def _client_kwargs(self, httpx: Any) -> dict[str, Any]:
        return {
            "timeout": self.timeout,
            # a CA bundle path becomes an SSLContext (httpx 0.28 deprecates verify=<path>)
            "verify": ssl.create_default_context(cafile=self.verify) if isinstance(self.verify, str) else self.verify,
            "headers": self._headers(),
            "follow_redirects": False,
            "limits": httpx.Limits(
                max_connections=self.max_connections, max_keepalive_connections=self.max_connections
            ),
        }

    def _async_client(self) -> tuple[httpx.AsyncClient, asyncio.Semaphore]:
        # httpcore's pool rescans every queued request whenever one finishes (quadratic in the
        # queue): hundreds of concurrent calls queued there took 16 s instead of 2 s for 600
        # requests here. So requests wait on a semaphore instead, never inside the pool.
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.get(loop)
            if entry is None:
                httpx = _import_httpx()
                entry = (httpx.AsyncClient(**self._client_kwargs(httpx)), asyncio.Semaphore(self.max_connections))
                self._aclients[loop] = entry
            return entry

    def close(self) -> None:
        """Close the sync HTTP client (a later call opens a new one). Async clients: :meth:`aclose`."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        """Close the HTTP clients of this event loop and the sync client."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entry = self._aclients.pop(loop, None)
        if entry is not None:
            await entry[0].aclose()
        self.close()

    def __enter__(self) -> RemoteScorer:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> RemoteScorer:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # -- one request -------------------------------------------------------------------

    def _fail(self, what: str) -> ScorerError:
        text = f"remote scorer {self.name!r} at {self.url}: {what}"
        if self._api_key is not None:
            secret = self._api_key.get_secret_value()
            if secret:
                text = text.replace(secret, "**********")
        return ScorerError(text)

    def _transport_error(self, exc: Exception) -> Exception:
        """Map an httpx transport error to a retryable error or a final ScorerError."""
        httpx = _import_httpx()
        kind = type(exc).__name__
        if isinstance(exc, httpx.ConnectTimeout):
            return _Retryable(f"could not connect within timeout={self.timeout:g} s ({kind})")
        if isinstance(exc, httpx.PoolTimeout):
            return self._fail(
                f"no free connection within timeout={self.timeout:g} s ({kind}): too many concurrent calls; "
                "raise timeout= or lower the concurrency"
            )
        if isinstance(exc, httpx.TimeoutException):
            return self._fail(
                f"the server did not answer within timeout={self.timeout:g} s ({kind}); raise timeout= "
                "or lower max_batch= so that each request is smaller"
            )
        return _Retryable(f"connection failed ({kind}: {exc})")

    def _check(self, response: httpx.Response, n: int) -> tuple[list[float], list[float]]:
        """Raise for an unusable response; return (relevance, raw) in the batch's order."""
        status = response.status_code
        if status == 429:
            wait = parse_retry_after(response.headers.get("Retry-After"))
            if wait is not None and wait > self.max_wait:
                raise self._fail(
                    f"HTTP 429 (rate limited) asking to retry after {wait:g} s, longer than max_wait="
                    f"{self.max_wait:g} s: {server_message(response)}"
                )
            raise _Retryable(f"HTTP 429 (rate limited): {server_message(response)}", retry_after=wait)
        if status >= 500 and status not in _NOT_RETRIED_5XX:
            raise _Retryable(f"HTTP {status}: {server_message(response)}")
        if status >= 300 or status < 200:
            fix = {
                401: "check api_key",
                403: "check api_key and its permissions",
                404: "check the url, path= and model= (vLLM answers 404 for a model it does not serve)",
                405: "check path= (the endpoint does not take POST)",
                413: "lower max_batch= or shorten the documents",
            }.get(status, "check the request settings (model=, api=, path=)")
            raise self._fail(f"HTTP {status} from the server: {server_message(response)}. Fix: {fix}")
        try:
            data = response.json()
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._fail(f"the answer is not valid JSON ({exc})") from exc
        try:
            return parse_answer(self.api, data, n)
        except WireError as exc:
            raise self._fail(str(exc)) from None

    # -- retries -----------------------------------------------------------------------

    def _retry_kwargs(self) -> dict[str, Any]:
        tn = _import_tenacity()
        expo = tn.wait_exponential(multiplier=self.backoff, max=self.max_wait) + tn.wait_random(0, self.backoff)

        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome is not None else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return exc.retry_after
            return float(expo(state))

        def before_sleep(state: tenacity.RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome is not None else None
            wait_s = state.next_action.sleep if state.next_action is not None else 0.0
            logger.warning(
                "remote scorer %s: %s; retrying in %.2f s (attempt %d of %d)",
                self.url,
                exc,
                wait_s,
                state.attempt_number + 1,
                self.max_retries + 1,
            )

        return {
            "stop": tn.stop_after_attempt(self.max_retries + 1),
            "wait": wait,
            "retry": tn.retry_if_exception_type(_Retryable),
            "before_sleep": before_sleep,
            "reraise": True,
        }

    def _gave_up(self, exc: _Retryable) -> ScorerError:
        attempts = self.max_retries + 1
        hint = " Is the server running and reachable?" if "connect" in str(exc) else ""
        return self._fail(f"gave up after {attempts} attempt{'s' if attempts > 1 else ''}: {exc}.{hint}")

    def _request(self, query: str, texts: list[str]) -> tuple[list[float], list[float]]:
        httpx = _import_httpx()
        tn = _import_tenacity()
        client = self._sync_client()
        content = request_body(self.api, self.model, query, texts)
        headers = {"Content-Type": "application/json"}
        try:
            for attempt in tn.Retrying(**self._retry_kwargs()):
                with attempt:
                    try:
                        with self._slots:
                            response = client.post(self.endpoint, content=content, headers=headers)
                    except httpx.TransportError as exc:
                        raise self._transport_error(exc) from exc
                    return self._check(response, len(texts))
        except _Retryable as exc:
            raise self._gave_up(exc) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    async def _arequest(self, query: str, texts: list[str]) -> tuple[list[float], list[float]]:
        httpx = _import_httpx()
        tn = _import_tenacity()
        client, slots = self._async_client()
        content = request_body(self.api, self.model, query, texts)
        headers = {"Content-Type": "application/json"}
        try:
            async for attempt in tn.AsyncRetrying(**self._retry_kwargs()):
                with attempt:
                    try:
                        async with slots:
                            response = await client.post(self.endpoint, content=content, headers=headers)
                    except httpx.TransportError as exc:
                        raise self._transport_error(exc) from exc
                    return self._check(response, len(texts))
        except _Retryable as exc:
            raise self._gave_up(exc) from exc
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    # -- the Scorer protocol -----------------------------------------------------------

    def _chunks(self, texts: list[str]) -> list[tuple[int, list[str]]]:
        return [(start, texts[start : start + self.max_batch]) for start in range(0, len(texts), self.max_batch)]

    @staticmethod
    def _merge(n: int, parts: list[tuple[int, tuple[list[float], list[float]]]]) -> Scores:
        relevance = [0.0] * n
        raw = [0.0] * n
        for start, (rel, r) in parts:
            relevance[start : start + len(rel)] = rel
            raw[start : start + len(r)] = r
        return Scores(relevance=relevance, raw=raw, pairs=n, batches=len(parts))

    def score(self, query: str, texts: Sequence[str]) -> Scores:
        """Score every text against the query on the server; one entry per text, in input order.

        Raises:
            ValueError / TypeError: the query is empty, or a text is not a string.
            ScorerError: the server is unreachable after the retries, answered an error
                (its message included), timed out, or answered something unusable.
        """
        texts = check_inputs(query, texts)
        if not texts:
            return Scores(relevance=[], raw=[])
        parts = [(start, self._request(query, chunk)) for start, chunk in self._chunks(texts)]
        return self._merge(len(texts), parts)

    async def ascore(self, query: str, texts: Sequence[str]) -> Scores:
        """Async :meth:`score` over an ``httpx.AsyncClient`` (no threads); requests run concurrently."""
        texts = check_inputs(query, texts)
        if not texts:
            return Scores(relevance=[], raw=[])
        semaphore = asyncio.Semaphore(self.max_parallel)

        async def one(start: int, chunk: list[str]) -> tuple[int, tuple[list[float], list[float]]]:
            async with semaphore:
                return start, await self._arequest(query, chunk)

        tasks = [asyncio.ensure_future(one(start, chunk)) for start, chunk in self._chunks(texts)]
        try:
            parts = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:  # one request failed: stop the others rather than leave them running
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return self._merge(len(texts), list(parts))
