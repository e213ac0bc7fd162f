"""Helpers shared by the package's HTTP clients (``RemoteScorer``, the Ollama query generator, the Ollama examples).

Standard library only: the clients import httpx themselves, lazily, behind their extras.
"""

from __future__ import annotations

import email.utils
import json
import os
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:
    import httpx

MESSAGE_CHARS = 500  # at most this much of a server's error message goes into an exception


def ollama_url(host: str | None = None) -> str:
    """The Ollama base URL from ``host`` or ``OLLAMA_HOST`` (``host:port``, ``:port`` or a URL)."""
    value = (host or os.environ.get("OLLAMA_HOST") or "").strip().rstrip("/")
    if not value:
        return "http://127.0.0.1:11434"
    scheme, sep, rest = value.partition("://")
    if not sep:
        scheme, rest = "http", value
    netloc, slash, path = rest.partition("/")
    if netloc.startswith(":"):
        netloc = "127.0.0.1" + netloc
    if ":" not in netloc.rpartition("]")[2]:
        netloc += ":11434" if not sep else (":443" if scheme == "https" else ":80")
    return f"{scheme}://{netloc}{slash}{path}"


def redact_url(url: str) -> str:
    """The URL without user info (``user:password@``), query string or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    netloc = host if parts.port is None else f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(when.timestamp() - time.time(), 0.0)


def server_message(response: httpx.Response) -> str:
    """The human part of an error response, without echoed request input.

    Understands FastAPI's ``{"detail": ...}`` (Infinity, vLLM's 422s), OpenAI-style
    ``{"error": {"message": ...}}`` and ``{"message": ...}`` (vLLM), TEI's
    ``{"error": ..., "error_type": ...}`` and Cohere's ``{"message": ...}``. FastAPI's
    validation errors echo the offending input (documents): only ``loc`` and ``msg`` are kept.
    """
    try:
        data = response.json()
    except (ValueError, UnicodeDecodeError):
        text = response.text.strip()
        return text[:MESSAGE_CHARS] + ("..." if len(text) > MESSAGE_CHARS else "")
    message: Any = data
    if isinstance(data, dict):
        for key in ("detail", "error", "message"):
            if key in data:
                message = data[key]
                break
        if isinstance(message, dict):
            message = message.get("message", message)
    if isinstance(message, list):  # FastAPI validation errors
        parts = []
        for item in message:
            if isinstance(item, dict):
                loc = ".".join(str(x) for x in item.get("loc", []) if x != "body")
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg", "")))
            else:
                parts.append(str(item))
        message = "; ".join(parts)
    text = message if isinstance(message, str) else json.dumps(message, ensure_ascii=False)
    return text[:MESSAGE_CHARS] + ("..." if len(text) > MESSAGE_CHARS else "")


def utf8_safe(text: str) -> str:
    """Replace lone surrogates (not encodable as UTF-8) with U+FFFD; valid pairs are joined."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
