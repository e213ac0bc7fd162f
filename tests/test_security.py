"""Security: model code runs only when asked, and document text stays out of logs above DEBUG."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pytest
from fake_rerank_server import FakeRerankServer, Fault

from ce_rerank import CrossEncoderScorer, ModelLoadError, Reranker, RerankerSettings

MARKER = "ZQX-UNIQUE-MARKER-7731"
CONFIGURATION = """
import os
from pathlib import Path

from transformers import BertConfig

# Proof of execution: importing this module writes the file named by the environment.
_marker = os.environ.get("CE_RERANK_REMOTE_CODE_MARKER")
if _marker:
    Path(_marker).write_text("model code ran")


class CeBertConfig(BertConfig):
    model_type = "ce_bert_custom"
"""
MODELING = """
from transformers import BertForSequenceClassification

from .configuration_cebert import CeBertConfig


class CeBertForSequenceClassification(BertForSequenceClassification):
    config_class = CeBertConfig
"""


@pytest.fixture
def remote_code_model_dir(tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny cross-encoder, declared as a custom architecture whose code ships with the model."""
    import transformers.dynamic_module_utils as dmu

    out = tmp_path / "custom-code-ce"
    shutil.copytree(tiny_model_dir, out)
    config = json.loads((out / "config.json").read_text())
    config["model_type"] = "ce_bert_custom"
    config["architectures"] = ["CeBertForSequenceClassification"]
    config["auto_map"] = {
        "AutoConfig": "configuration_cebert.CeBertConfig",
        "AutoModelForSequenceClassification": "modeling_cebert.CeBertForSequenceClassification",
    }
    (out / "config.json").write_text(json.dumps(config))
    (out / "configuration_cebert.py").write_text(CONFIGURATION)
    (out / "modeling_cebert.py").write_text(MODELING)
    monkeypatch.setenv("CE_RERANK_REMOTE_CODE_MARKER", str(tmp_path / "ran.txt"))
    # transformers copies trusted model code into its modules cache: keep that in the temp dir
    monkeypatch.setattr(dmu, "HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    return out


def test_trust_remote_code_is_off_unless_set() -> None:
    assert CrossEncoderScorer("some/model").trust_remote_code is False
    settings = RerankerSettings(model="some/model")
    assert settings.trust_remote_code is False
    assert settings._local_scorer().trust_remote_code is False
    assert RerankerSettings(model="some/model", trust_remote_code=True)._local_scorer().trust_remote_code is True


def test_both_adapters_default_to_not_trusting_remote_code() -> None:
    from langchain_ce_rerank import CrossEncoderRerank as LcRerank
    from llamaindex_ce_rerank import CrossEncoderRerank as LiRerank

    assert LcRerank(model="some/model").trust_remote_code is False
    assert LiRerank(model="some/model").trust_remote_code is False


def test_a_model_that_needs_remote_code_fails_saying_to_pass_trust_remote_code(
    remote_code_model_dir: Path, tmp_path: Path
) -> None:
    scorer = CrossEncoderScorer(str(remote_code_model_dir), device="cpu")
    with pytest.raises(ModelLoadError) as info:
        scorer.score("capital of France", ["Paris"])
    assert "the model ships its own Python code, which ce-rerank does not run unless told to" in str(info.value)
    assert "pass trust_remote_code=True if you have read and trust that code" in str(info.value)
    assert not (tmp_path / "ran.txt").exists()  # the model's code never ran


@pytest.mark.parametrize("framework", ["langchain", "llamaindex"])
def test_the_adapters_refuse_remote_code_by_default(
    remote_code_model_dir: Path, tmp_path: Path, framework: str
) -> None:
    if framework == "langchain":
        from langchain_core.documents import Document

        from langchain_ce_rerank import CrossEncoderRerank

        with pytest.raises(ModelLoadError, match="pass trust_remote_code=True"):
            CrossEncoderRerank(model=str(remote_code_model_dir), device="cpu").compress_documents(
                [Document(page_content="Paris")], "capital of France"
            )
    else:
        from llama_index.core.schema import NodeWithScore, TextNode

        from llamaindex_ce_rerank import CrossEncoderRerank as LiRerank

        with pytest.raises(ModelLoadError, match="pass trust_remote_code=True"):
            LiRerank(model=str(remote_code_model_dir), device="cpu").postprocess_nodes(
                [NodeWithScore(node=TextNode(text="Paris"))], query_str="capital of France"
            )
    assert not (tmp_path / "ran.txt").exists()


def test_trust_remote_code_true_runs_the_models_code(remote_code_model_dir: Path, tmp_path: Path) -> None:
    scorer = CrossEncoderScorer(str(remote_code_model_dir), device="cpu", trust_remote_code=True)
    scores = scorer.score("capital of France", ["Paris is the capital.", "Bananas."])
    assert len(scores) == 2
    assert (tmp_path / "ran.txt").read_text() == "model code ran"


# -- no document text in logs above DEBUG -------------------------------------------------------


def _above_debug(caplog: pytest.LogCaptureFixture) -> list[str]:
    out = []
    for record in caplog.records:
        if record.levelno > logging.DEBUG:
            out.append(record.getMessage())
            if record.exc_info and record.exc_info[1] is not None:
                out.append(str(record.exc_info[1]))
    return out


def test_local_reranking_logs_no_document_text_above_debug(
    tiny_model_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    docs = [f"The capital of France is Paris {MARKER}.", "Bananas are yellow.", f"{MARKER} " * 40]
    with caplog.at_level(logging.INFO):
        ranked = Reranker(CrossEncoderScorer(tiny_model_dir, device="cpu"), top_n=2).rerank(f"capital {MARKER}", docs)
    assert len(ranked) == 2
    lines = _above_debug(caplog)
    assert any("reranked 3 candidates" in line for line in lines)  # INFO logging was on and captured
    assert not [line for line in lines if MARKER in line]


def test_the_debug_table_shows_ids_not_text(tiny_model_dir: str, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="ce_rerank"):
        Reranker(CrossEncoderScorer(tiny_model_dir, device="cpu")).rerank("capital", [f"Paris {MARKER}", "Bananas"])
    table = [r.getMessage() for r in caplog.records if "rerank result" in r.getMessage()]
    assert table and MARKER not in table[0] and "t:" in table[0]


@pytest.mark.parametrize("mode", ["ok", "server_echoes_input", "server_down"])
def test_remote_reranking_logs_no_document_text_above_debug(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    pytest.importorskip("httpx")
    from ce_rerank._remote import RemoteScorer

    docs = [f"Paris is the capital {MARKER}", "Bananas"]
    with FakeRerankServer() as server:
        if mode == "server_echoes_input":  # FastAPI's 422 echoes the offending input
            detail = [{"loc": ["body", "documents", 0], "msg": "too long", "input": docs[0]}]
            server.plan(Fault.error(422, {"detail": detail}))
        if mode == "server_down":
            server.close()
        scorer = RemoteScorer(server.url, max_retries=1, backoff=0.01, api_key="sk-secret-value")
        with caplog.at_level(logging.INFO), scorer:
            ranked = Reranker(scorer, on_error="passthrough").rerank(f"query {MARKER}", docs)
    assert len(ranked) == 2
    lines = _above_debug(caplog)
    if mode != "ok":
        assert any("on_error='passthrough'" in line for line in lines)  # the failure was logged
    assert not [line for line in lines if MARKER in line or "sk-secret-value" in line]
