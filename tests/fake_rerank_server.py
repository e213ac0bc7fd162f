"""A rerank server on 127.0.0.1 made of the standard library, for fault injection.

It answers both wire formats on any POST path:

- ``{model, query, documents, top_n}`` -> ``{results: [{index, relevance_score}]}``
  (Cohere v2 / Jina / vLLM / Infinity), results sorted best first as real servers do;
- ``{query, texts, raw_scores}`` -> ``[{index, score}]`` (Hugging Face TEI).

Scores come from :func:`fake_logit`, a fixed function of (query, text), so tests know the
right answer. ``GET /health`` answers 200. Faults are queued with :meth:`FakeRerankServer.plan`:
each POST takes the next one (then answers normally once the queue is empty).

In-process use (a thread)::

    with FakeRerankServer() as server:
        server.plan(Fault.status(500), Fault.ok())
        RemoteScorer(server.url).score("q", ["a", "b"])

As a separate process that a test can kill (``python tests/fake_rerank_server.py --sleep 5``):
it prints ``PORT <n>`` once listening and ``REQUEST`` for each POST, and exits by itself
after ``--lifetime`` seconds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import socket
import sys
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def fake_logit(query: str, text: str) -> float:
    """The fake model: a logit in [-4, 4) fixed by (query, text)."""
    digest = hashlib.sha1((query + "\x00" + text).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:4], "big") / 2**32 * 8.0 - 4.0


def fake_relevance(query: str, text: str) -> float:
    return 1.0 / (1.0 + math.exp(-fake_logit(query, text)))


@dataclass
class Fault:
    """What the server does with one POST.

    kind: ``ok``, ``status`` (answer ``status`` with ``body`` and ``headers``), ``sleep``
    (wait ``seconds``, then answer normally), ``malformed`` (200 with broken JSON),
    ``too_few`` (one result missing), ``index_out_of_range``, ``duplicate_index``,
    ``drop`` (close the connection without answering) or ``kill`` (drop, then stop
    listening and close every connection: the server is gone).
    """

    kind: str = "ok"
    status: int = 200
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0

    @classmethod
    def ok(cls) -> Fault:
        return cls("ok")

    @classmethod
    def error(cls, status: int, body: Any = None, *, retry_after: str | None = None) -> Fault:
        text = body if isinstance(body, str) else json.dumps(body if body is not None else {"error": "injected"})
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        return cls("status", status=status, body=text, headers=headers)

    @classmethod
    def sleep(cls, seconds: float) -> Fault:
        return cls("sleep", seconds=seconds)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as real servers do
    server: _Server

    def setup(self) -> None:
        super().setup()
        # answer at once: without this, Nagle's algorithm and delayed ACKs add 40 ms per request
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/health":
            self._send(200, b"{}")
        else:
            self._send(404, json.dumps({"detail": "Not Found"}).encode())

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        owner = self.server.owner
        fault = owner._next(self.path, dict(self.headers), raw)
        if owner.echo_requests:
            print("REQUEST", flush=True)
        if fault.kind in ("drop", "kill"):
            self.close_connection = True
            if fault.kind == "kill":
                threading.Thread(target=owner.kill, daemon=True).start()
            return
        if fault.kind == "sleep" and owner._stopping.wait(fault.seconds):
            self.close_connection = True
            return
        if fault.kind == "status":
            self._send(fault.status, fault.body.encode(), fault.headers)
            return
        if owner.api_key is not None and self.headers.get("Authorization") != f"Bearer {owner.api_key}":
            self._send(401, json.dumps({"detail": "invalid API key"}).encode())
            return
        try:
            body = json.loads(raw)
        except ValueError:
            self._send(400, json.dumps({"detail": "body is not JSON"}).encode())
            return
        tei = "texts" in body
        texts = body.get("texts" if tei else "documents")
        query = body.get("query")
        if not isinstance(texts, list) or not isinstance(query, str):
            self._send(422, json.dumps({"detail": [{"loc": ["body", "query"], "msg": "field required"}]}).encode())
            return
        if len(texts) > owner.max_batch:
            msg = f"batch size {len(texts)} > maximum allowed batch size {owner.max_batch}"
            self._send(413, json.dumps({"error": msg, "error_type": "Validation"}).encode())
            return
        logits = [fake_logit(query, t) for t in texts]
        order = sorted(range(len(texts)), key=lambda i: -logits[i])
        if tei:
            items: list[dict[str, Any]] = [{"index": i, "score": logits[i]} for i in order]
        else:
            items = [{"index": i, "relevance_score": 1.0 / (1.0 + math.exp(-logits[i]))} for i in order]
        if fault.kind == "too_few":
            items = items[:-1]
        elif fault.kind == "index_out_of_range" and items:
            items[0]["index"] = len(texts)
        elif fault.kind == "duplicate_index" and len(items) > 1:
            items[1]["index"] = items[0]["index"]
        payload = json.dumps(items if tei else {"results": items, "model": body.get("model")})
        if fault.kind == "malformed":
            payload = payload[: len(payload) // 2]
        self._send(200, payload.encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # hundreds of concurrent clients connect at once in the load tests
    owner: FakeRerankServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that timed out and left: not an error of the server

    def process_request(self, request: Any, client_address: Any) -> None:
        with self.owner._lock:
            self.owner._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.owner._lock:
            self.owner._connections.discard(request)
        super().shutdown_request(request)


class FakeRerankServer:
    """A rerank server in a background thread on 127.0.0.1 (an ephemeral port).

    Args:
        max_batch: more documents than this in one request get TEI's 413.
        api_key: when set, requests without ``Authorization: Bearer <api_key>`` get 401.
        record: keep every request (path, headers, body) in ``requests``; off for load tests,
            whose memory measurements must not count the server's own log.
    """

    def __init__(
        self, *, max_batch: int = 1000, api_key: str | None = None, record: bool = True, echo_requests: bool = False
    ) -> None:
        self.max_batch = max_batch
        self.api_key = api_key
        self.record = record
        self.echo_requests = echo_requests
        self.requests: list[dict[str, Any]] = []
        self._posts = 0
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.owner = self
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        self._closed = False

    def plan(self, *faults: Fault | str) -> FakeRerankServer:
        """Queue what the next POSTs get (a string is a ``Fault`` kind)."""
        with self._lock:
            self._faults.extend(Fault(f) if isinstance(f, str) else f for f in faults)
        return self

    def _next(self, path: str, headers: dict[str, str], raw: bytes) -> Fault:
        with self._lock:
            self._posts += 1
            if self.record:
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                self.requests.append({"path": path, "headers": headers, "body": body})
            return self._faults.popleft() if self._faults else Fault()

    @property
    def posts(self) -> int:
        with self._lock:
            return self._posts

    def kill(self) -> None:
        """Stop listening and cut every open connection (as if the process died)."""
        if self._closed:
            return
        self._closed = True
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        with self._lock:
            conns = list(self._connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self) -> None:
        self.kill()
        self._thread.join(timeout=5)

    def __enter__(self) -> FakeRerankServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sleep", type=float, default=0.0, help="seconds each POST waits before answering")
    parser.add_argument("--lifetime", type=float, default=60.0, help="exit after this many seconds")
    args = parser.parse_args(argv)
    server = FakeRerankServer(echo_requests=True)
    if args.sleep:
        server.plan(*[Fault.sleep(args.sleep)] * 1000)
    print(f"PORT {server.port}", flush=True)
    threading.Event().wait(args.lifetime)
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
