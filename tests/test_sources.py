"""Where a model comes from (ce_rerank/_sources.py): a file, an unreachable hub, offline mode,
the local cache, and no progress bars while loading. Nothing here reaches the network: the
"hub" is a closed port on 127.0.0.1.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from _hub_cache import closed_port, run_python

from ce_rerank import DEFAULT_MODEL, CrossEncoderScorer, ModelLoadError, clear_model_cache
from ce_rerank._sources import _OFFLINE_FIX


def test_a_file_given_as_the_model_is_named_a_file_not_a_model_directory(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("# not a model\n")
    with pytest.raises(ModelLoadError) as info:
        CrossEncoderScorer(str(readme)).load()
    assert str(info.value) == (
        f"could not load cross-encoder {str(readme)!r}: it is a file, not a model directory. Fix: pass a model "
        "directory (config.json, the weights and the tokenizer files, as written by CrossEncoder.save_pretrained) "
        "or a Hugging Face hub id"
    )


def test_a_file_inside_a_model_directory_points_at_that_directory(tiny_model_dir: str) -> None:
    weights = str(Path(tiny_model_dir) / "config.json")
    with pytest.raises(ModelLoadError, match="it is a file, not a model directory") as info:
        CrossEncoderScorer(weights).load()
    assert info.value.fix == f"pass the directory that holds it: {Path(tiny_model_dir).resolve()}"


# One fresh process, as a user's: HF_HUB_OFFLINE unset, the hub a closed port, an empty cache. It
# loads (1) a hub id that is not cached, (2) the same with HF_HUB_OFFLINE=1 set at run time, then
# (3) with the model put in the cache, offline and (4) online with the hub still unreachable.
SCRIPT = r"""
import json, os, sys, time
import sentence_transformers  # imported before the clock starts: its import is not the wait measured
from ce_rerank import CrossEncoderScorer, ModelLoadError, clear_model_cache
sys.path.insert(0, sys.argv[3])
from _hub_cache import cache_as_hub_model

repo, tiny = sys.argv[1], sys.argv[2]
report = {}

def attempt(name):
    clear_model_cache()
    start = time.monotonic()
    try:
        scores = CrossEncoderScorer(repo, device="cpu").score("capital of France", ["Paris", "bananas"])
        report[name] = {"ok": len(scores.relevance), "seconds": time.monotonic() - start}
    except ModelLoadError as exc:
        report[name] = {"error": str(exc), "seconds": time.monotonic() - start}

attempt("unreachable")
os.environ["HF_HUB_OFFLINE"] = "1"
attempt("offline")
cache_as_hub_model(tiny, __import__("pathlib").Path(os.environ["HF_HOME"]), repo)
attempt("offline_cached")
del os.environ["HF_HUB_OFFLINE"]
attempt("unreachable_cached")
print(json.dumps(report))
"""


@pytest.mark.slow
def test_a_hub_id_fails_within_seconds_when_the_hub_is_unreachable_and_loads_from_the_cache(
    tiny_model_dir: str, tmp_path: Path
) -> None:
    hf_home = tmp_path / "hf-home"
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    endpoint = f"http://127.0.0.1:{closed_port()}"
    env |= {"HF_ENDPOINT": endpoint, "HF_HOME": str(hf_home)}
    report = run_python(SCRIPT, DEFAULT_MODEL, tiny_model_dir, str(Path(__file__).parent), env=env)
    unreachable = report["unreachable"]
    assert unreachable["seconds"] < 10  # huggingface_hub's own retries took 52-54 s
    assert unreachable["error"].startswith(
        f"could not load cross-encoder {DEFAULT_MODEL!r}: it is neither a local directory nor in the local Hugging "
        f"Face cache, and the Hugging Face hub ({endpoint}) cannot be reached ("
    )
    assert unreachable["error"].endswith(f"). Fix: {_OFFLINE_FIX}")
    assert "HF_HUB_OFFLINE=1" in unreachable["error"]
    assert report["offline"]["seconds"] < 10
    assert report["offline"]["error"] == (
        f"could not load cross-encoder {DEFAULT_MODEL!r}: it is neither a local directory nor in the local Hugging "
        f"Face cache ({hf_home / 'hub'}), and HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) forbids downloading it. "
        "Fix: pass a local directory (model=<dir>), or unset HF_HUB_OFFLINE on a machine that reaches the hub so "
        "that the model is downloaded once"
    )
    for cached in ("offline_cached", "unreachable_cached"):
        assert report[cached]["ok"] == 2, report
        assert report[cached]["seconds"] < 10


def test_loading_a_model_draws_no_progress_bar_and_keeps_the_users_setting(
    tiny_model_dir: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    model_dir = shutil.copytree(tiny_model_dir, tmp_path / "m")  # a key nothing has loaded yet
    hf_logging.enable_progress_bar()
    try:
        AutoModelForSequenceClassification.from_pretrained(model_dir)
        assert "Loading weights" in capfd.readouterr().err  # transformers draws its bar here...
        clear_model_cache()
        CrossEncoderScorer(str(model_dir), device="cpu").load()
        assert "Loading weights" not in capfd.readouterr().err  # ...but not when ce-rerank loads
        assert hf_logging.is_progress_bar_enabled()  # the user's setting, restored
        hf_logging.disable_progress_bar()
        clear_model_cache()
        CrossEncoderScorer(str(model_dir), device="cpu").load()
        assert not hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.enable_progress_bar()
        clear_model_cache()


@pytest.fixture
def online(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """This process as if HF_HUB_OFFLINE were unset (conftest.py sets it for every test)."""
    import huggingface_hub.constants as hub

    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return monkeypatch


def test_the_probe_passes_when_the_hub_answers_anything(online: pytest.MonkeyPatch) -> None:
    import http.server
    import threading

    import huggingface_hub.constants as hub

    from ce_rerank._sources import _probe_hub

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(404)  # any answer means the hub is there
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        online.setattr(hub, "ENDPOINT", f"http://127.0.0.1:{server.server_port}")
        assert _probe_hub() is None
    finally:
        server.shutdown()
        server.server_close()


def test_the_probe_gives_up_within_seconds_on_a_hub_that_never_answers(online: pytest.MonkeyPatch) -> None:
    import socket
    import time

    import huggingface_hub.constants as hub

    from ce_rerank._sources import PROBE_SECONDS, _probe_hub

    with socket.socket() as silent:  # accepts connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        endpoint = f"http://127.0.0.1:{silent.getsockname()[1]}"
        online.setattr(hub, "ENDPOINT", endpoint)
        start = time.monotonic()
        problem = _probe_hub()
        elapsed = time.monotonic() - start
    assert problem is not None and problem.startswith(f"the Hugging Face hub ({endpoint}) cannot be reached (")
    assert elapsed < PROBE_SECONDS + 2
