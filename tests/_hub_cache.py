"""A local Hugging Face cache holding a model under a hub id, built offline (no download), and a
fresh interpreter to load it in (huggingface_hub reads HF_HOME and HF_ENDPOINT at import).

The layout huggingface_hub writes (``HF_HOME/hub/models--ORG--NAME/refs/main`` naming a snapshot
folder that holds the files), so that a hub id loads from the cache as it would on a user's
machine after one download.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def cache_as_hub_model(model_dir: str | Path, hf_home: Path, repo_id: str) -> Path:
    """Copy ``model_dir`` into ``hf_home``'s hub cache as ``repo_id``; return the snapshot folder."""
    repo = hf_home / "hub" / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / COMMIT
    shutil.copytree(model_dir, snapshot, dirs_exist_ok=True)
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(COMMIT)
    return snapshot


def closed_port() -> int:
    """A 127.0.0.1 port nothing listens on (connections are refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_python(code: str, *args: str, env: dict[str, str], stdin: str | None = None, timeout: float = 300) -> Any:
    """Run ``code`` in a fresh interpreter (from the repository root, ce-rerank importable) with ``env``;
    return what its last line of stdout holds, as JSON. A non-zero exit fails with its stderr."""
    proc = subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Retrying" not in proc.stderr and "Loading weights" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])
