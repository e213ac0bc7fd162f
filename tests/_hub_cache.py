"""A local Hugging Face cache holding a model under a hub id, built offline (no download).

The layout huggingface_hub writes (``HF_HOME/hub/models--ORG--NAME/refs/main`` naming a snapshot
folder that holds the files), so that a hub id loads from the cache as it would on a user's
machine after one download.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

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
