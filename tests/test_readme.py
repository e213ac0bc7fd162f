"""The README's Python examples run as written after their install line.

Every ``python`` block of the sections below runs in a fresh process, offline, with the default
hub id (``cross-encoder/ms-marco-MiniLM-L-6-v2``) served from a local Hugging Face cache that holds
the tiny test model under that name, as a user's cache would after one download. The objects the
README's text says are the user's own (``vectorstore``, ``index``, ``prompt``, ``llm``, ``texts``)
are small in-memory ones. Blocks of one section share a namespace, in order, as a reader runs them.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from _hub_cache import cache_as_hub_model, run_python

from ce_rerank import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("LangChain", "LlamaIndex", "The `ce-rerank` command", "The core, without a framework")

# The user's own objects, which the README's text names before the blocks that use them.
PRELUDE = r"""
from langchain_core.documents import Document as _Doc
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.language_models import FakeListLLM
from langchain_core.prompts import PromptTemplate
from langchain_core.vectorstores import InMemoryVectorStore
from llama_index.core import Document as _LIDoc, Settings, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.llms import MockLLM

texts = ["Paris is the capital of France.", "Bananas are yellow.", "Lyon is a city in France."]
vectorstore = InMemoryVectorStore.from_documents(
    [_Doc(page_content=t) for t in texts], DeterministicFakeEmbedding(size=16)
)
prompt = PromptTemplate.from_template("{context}\n{question}")
llm = FakeListLLM(responses=["Paris"])
Settings.llm = MockLLM()
index = VectorStoreIndex.from_documents([_LIDoc(text=t) for t in texts], embed_model=MockEmbedding(embed_dim=8))
"""

RUNNER = r"""
import json, sys, traceback
blocks = json.loads(sys.stdin.read())
prelude = {}
exec(compile(sys.argv[1], "<prelude>", "exec"), prelude)
# Outputs the examples write (tuned/) go to a scratch folder that sees the checkout's data as its own.
import os
os.symlink(os.path.abspath("ce_rerank"), os.path.join(sys.argv[2], "ce_rerank"))
os.chdir(sys.argv[2])
report, namespaces = [], {}
for section, code in blocks:
    ns = namespaces.setdefault(section, dict(prelude))
    try:
        exec(compile(code, f"README.md: {section}", "exec"), ns)
        report.append([section, "ok"])
    except BaseException:
        report.append([section, traceback.format_exc()])
print(json.dumps(report))
"""


def readme_blocks() -> list[tuple[str, str]]:
    """(section, code) of each ``python`` block in :data:`SECTIONS`, in README order."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = []
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        title = part.splitlines()[0].strip()
        if title in SECTIONS:
            blocks += [(title, code) for code in re.findall(r"^```python\n(.*?)^```", part, flags=re.M | re.S)]
    return blocks


def test_the_readme_has_python_examples_in_each_section() -> None:
    found = {section for section, _ in readme_blocks()}
    assert found == set(SECTIONS)


@pytest.mark.slow
def test_every_readme_python_example_runs_as_written(tiny_model_dir: str, tmp_path: Path) -> None:
    pytest.importorskip("bm25s")
    hf_home = tmp_path / "hf-home"
    cache_as_hub_model(tiny_model_dir, hf_home, DEFAULT_MODEL)
    env = {**os.environ, "HF_HOME": str(hf_home), "HF_HUB_OFFLINE": "1"}
    blocks = readme_blocks()
    scratch = tmp_path / "cwd"
    scratch.mkdir()
    report = run_python(RUNNER, PRELUDE, str(scratch), env=env, stdin=json.dumps(blocks), timeout=600)
    if any(code.lstrip().startswith("from ce_rerank.finetune") for _, code in blocks):
        assert (scratch / "tuned" / "report.json").is_file()  # the fine-tuning example ran and wrote its report
    failures = [f"{section}:\n{outcome}" for section, outcome in report if outcome != "ok"]
    assert not failures, "\n".join(failures)
    assert len(report) == len(blocks) >= 8
