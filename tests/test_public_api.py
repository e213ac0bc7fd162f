"""Each package's public surface is pinned: changing it is a decision, not an accident."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

import ce_rerank
import langchain_ce_rerank
import llamaindex_ce_rerank

CORE_API = [
    "DEFAULT_MODEL",
    "CeRerankError",
    "CeRerankWarning",
    "CrossEncoderScorer",
    "ModelLoadError",
    "QueryTruncationWarning",
    "RankedCandidate",
    "RemoteScorer",
    "Reranker",
    "RerankerSettings",
    "Scorer",
    "Scores",
    "ScorerError",
    "TruncationWarning",
    "WindowCapWarning",
    "__version__",
    "clear_model_cache",
    "loaded_models",
    "rank",
]


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        (ce_rerank, CORE_API),
        (langchain_ce_rerank, ["CrossEncoderRerank", "HuggingFaceCrossEncoder", "RerankRetriever"]),
        (llamaindex_ce_rerank, ["CrossEncoderRerank"]),
    ],
)
def test_all_is_pinned_and_importable(module: object, expected: list[str]) -> None:
    assert sorted(module.__all__) == sorted(expected)  # type: ignore[attr-defined]
    for name in expected:
        assert hasattr(module, name)


@pytest.mark.parametrize("package", ["ce_rerank", "langchain_ce_rerank", "llamaindex_ce_rerank"])
def test_packages_ship_py_typed(package: str) -> None:
    assert (Path(importlib.import_module(package).__file__).parent / "py.typed").exists()  # type: ignore[arg-type]


def test_core_imports_no_framework() -> None:
    root = Path(ce_rerank.__file__).parent
    for path in root.rglob("*.py"):
        source = path.read_text()
        assert "langchain" not in source.replace("langchain_ce_rerank", ""), path
        assert "llama_index" not in source, path


def test_the_adapters_share_one_loaded_model(tiny_model_dir: str) -> None:
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    ce_rerank.clear_model_cache()
    lc = langchain_ce_rerank.CrossEncoderRerank(model=tiny_model_dir)
    li = llamaindex_ce_rerank.CrossEncoderRerank(model=tiny_model_dir)
    assert ce_rerank.loaded_models() == 0  # lazy: constructing loads nothing
    lc.compress_documents([Document(page_content="a")], "q")
    li.postprocess_nodes([NodeWithScore(node=TextNode(text="a"))], query_str="q")
    assert ce_rerank.loaded_models() == 1
    assert lc.reranker().scorer.load() is li.reranker().scorer.load()  # type: ignore[attr-defined]


def test_the_core_never_imports_a_workflow() -> None:
    """Evaluation, fine-tuning and the command line sit on top of the core, never inside it."""
    import ast

    root = Path(ce_rerank.__file__).parent
    core = [p for p in root.glob("*.py") if p.name not in ("evaluation.py", "finetune.py", "__main__.py")]
    assert {p.name for p in core} >= {"__init__.py", "_local.py", "_reranker.py", "_ranking.py"}
    for path in core:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                name = ("." * node.level) + (node.module or "")
                assert "workflows" not in name, f"{path.name} imports {name}"
                assert name.lstrip(".") not in ("evaluation", "finetune", "cli"), f"{path.name} imports {name}"
            elif isinstance(node, ast.Import):
                assert not any("workflows" in a.name for a in node.names), path.name


def test_importing_the_core_loads_no_workflow() -> None:
    import subprocess
    import sys

    code = "import sys, ce_rerank; print(sorted(m for m in sys.modules if m.startswith('ce_rerank.workflows')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"
