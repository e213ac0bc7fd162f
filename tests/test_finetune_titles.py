"""finetune --title-queries: document titles as label-free training queries.

Offline and fast: the demo corpus (every document has a title) and a tiny random cross-encoder.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from conftest import spy

import ce_rerank.finetune as ft
from ce_rerank import CrossEncoderScorer
from ce_rerank.evaluation import load_beir
from ce_rerank.workflows.cli import main
from ce_rerank.workflows.finetune import _run
from ce_rerank.workflows.finetune._titles import MAX_LEAD_WORDS, MIN_BODY_WORDS, MIN_TITLE_WORDS, title_queries

DEMO = Path(__file__).resolve().parents[1] / "ce_rerank" / "data" / "demo"


def _corpus(tmp_path: Path, docs: list[dict[str, str]]) -> Path:
    """The demo's queries and qrels over ``docs`` as corpus."""
    root = Path(shutil.copytree(DEMO, tmp_path / "data"))
    (root / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    return root


def _demo_docs() -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DEMO / "corpus.jsonl").read_text().splitlines()]


def test_titles_are_sampled_seeded_among_documents_with_a_usable_title_and_body(tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(MIN_BODY_WORDS))
    docs = [
        {"_id": "ok1", "title": "a title of four words", "text": words},
        # Cranfield repeats the title at the start of the text: the body is what follows it
        {"_id": "ok2", "title": "another title of five words .", "text": "Another title of five words . " + words},
        {"_id": "short-title", "title": "three word title", "text": words},
        {"_id": "short-body", "title": "a title of four words", "text": "too short a body"},
        {"_id": "no-title", "title": "", "text": words},
    ]
    root = _corpus(tmp_path, docs)
    t = title_queries(root, count=10, seed=1)
    assert t.documents == {"title-ok1": "ok1", "title-ok2": "ok2"}  # all eligible ones, fewer than asked
    assert t.queries["title-ok2"] == "another title of five words ."
    assert t.bodies["ok2"] == words  # the repeated title cut off
    assert t.bodies["short-title"] == words and "no-title" not in t.bodies  # every titled document loses its title
    assert t.stats == {
        "requested": 10,
        "used": 2,
        "documents": 5,
        "with_title": 4,
        "lead_sentences": 0,
        "eligible": 2,
        "min_title_words": MIN_TITLE_WORDS,
        "min_body_words": MIN_BODY_WORDS,
        "max_lead_words": MAX_LEAD_WORDS,
    }
    assert t.qrels() == {"title-ok1": {"ok1": 1}, "title-ok2": {"ok2": 1}}
    many = _corpus(
        tmp_path / "b", [{"_id": f"d{i}", "title": "a title of four words", "text": words} for i in range(30)]
    )
    a, b, c = (title_queries(many, count=5, seed=s).documents for s in (13, 13, 14))
    assert a == b and a != c and len(a) == 5


def test_a_document_without_a_title_stands_in_its_first_sentence_when_it_is_short(tmp_path: Path) -> None:
    words = " ".join(f"w{i}" for i in range(MIN_BODY_WORDS))
    long_lead = " ".join(f"l{i}" for i in range(MAX_LEAD_WORDS + 1))
    docs = [
        # MEDLINE: the article's title, then its abstract, joined by a full stop
        {"_id": "lead", "title": "", "text": f"surgical treatment of ventricular septal defects . {words}."},
        {"_id": "question", "title": "", "text": f"neonatal hepatitis or  obstructive jaundice?. {words}"},
        {"_id": "titled", "title": "a real title of words", "text": f"A first sentence of six words. {words}"},
        {"_id": "long-lead", "title": "", "text": f"{long_lead}. {words}"},
        {"_id": "no-end", "title": "", "text": f"no sentence end in this text {words}"},
        {"_id": "short-lead", "title": "", "text": f"amyloid. {words}"},
    ]
    t = title_queries(_corpus(tmp_path, docs), count=10, seed=1)
    assert t.queries == {
        "title-lead": "surgical treatment of ventricular septal defects",
        "title-question": "neonatal hepatitis or obstructive jaundice",
        "title-titled": "a real title of words",  # a title wins over the first sentence
    }
    assert t.bodies["lead"] == words + "." and t.bodies["question"] == words
    assert t.bodies["titled"] == f"A first sentence of six words. {words}"
    assert t.bodies["short-lead"] == words  # cut off like a short title, though too short to be a query
    assert "long-lead" not in t.bodies and "no-end" not in t.bodies  # no first sentence short enough
    assert (t.stats["with_title"], t.stats["lead_sentences"], t.stats["eligible"]) == (1, 3, 3)


def test_title_queries_refuse_a_corpus_without_usable_titles_and_a_clashing_query_id(tmp_path: Path) -> None:
    root = _corpus(tmp_path, [{"_id": "d1", "title": "", "text": "no title or sentence end here " * 10}])
    with pytest.raises(ValueError, match=r"none of the 1 documents has a title \(or, without one, a first sen") as e:
        title_queries(root, count=5)
    assert "drop --title-queries" in str(e.value) and "--generate-queries" in str(e.value)
    with pytest.raises(ValueError, match="'title-bees-scent' is already a query id"):
        title_queries(DEMO, count=100, taken={"title-bees-scent": "q"})
    with pytest.raises(ValueError, match="title_queries must be an integer >= 1"):
        title_queries(DEMO, count=0)


def test_title_queries_train_against_untitled_documents_and_stay_out_of_evaluation(
    tiny_model_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trained = spy(monkeypatch, _run, "train_cross_encoder")
    result = ft.finetune(
        DEMO,
        model=CrossEncoderScorer(tiny_model_dir, dtype="float32"),
        output=tmp_path / "t",
        title_queries=6,
        candidates=20,
        negatives=2,
        negative_depth=10,
        fusion="rrf",
        plot=False,
    )
    report, pairs = result.report, trained[0][1]
    lines = (tmp_path / "t" / "title_queries.jsonl").read_text().splitlines()
    titles = {json.loads(line)["_id"]: json.loads(line) for line in lines}
    assert len(titles) == report["titles"]["used"] == 6 and "title_queries.jsonl" in report["files"]
    docs = {d["_id"]: d for d in _demo_docs()}
    judged = load_beir(DEMO)
    title_rows = [i for i, q in enumerate(pairs.query_ids) if q.startswith("title-")]
    assert {pairs.query_ids[i] for i in title_rows} == set(titles)
    stats = report["titles"]["pairs"]
    assert len(title_rows) == stats["pairs"] == stats["positives"] + stats["negatives"]
    assert stats["positives"] == 6 and 6 < stats["negatives"] <= 12  # 2 a title, where BM25 found 2 others
    assert len(pairs) == report["pairs"]["pairs"] + len(title_rows)  # the judged pairs are trained on too
    for i in title_rows:
        row = titles[pairs.query_ids[i]]
        assert pairs.queries[i] == row["text"] == docs[row["document"]]["title"]
        # a body (or the window of it the base scores best), its title cut off
        doc = next(d for d in docs.values() if pairs.passages[i] in d["text"])
        assert not pairs.passages[i].startswith(doc["title"])
        assert (doc["_id"] == row["document"]) == (pairs.labels[i] == 1.0)
    # evaluation, dev and fusion weights stay on judged queries
    assert set(report["eval_queries"]) <= set(judged.judged_queries)
    assert not any(q.startswith("title-") for q in report["train_queries"] + report["dev_queries"])
    assert report["fusion"]["base"]["queries"] == len(report["train_queries"]) + len(report["dev_queries"])


def test_cli_title_queries_prints_what_it_added_and_refuses_bad_input_before_the_model(
    tiny_model_dir: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["finetune", str(DEMO), "--model", tiny_model_dir, "--output", str(out), "--candidates", "20"]
    assert main([*argv, "--title-queries", "4", "--no-progress", "--threads", "1", "--max-minutes", "0.05"]) in (0, 3)
    printed = capsys.readouterr().out
    assert "title queries: 4 titles (of " in printed and json.loads((out / "report.json").read_text())["titles"]
    missing = str(tmp_path / "no-model")  # reaching the model would fail with another message
    # no title, and no sentence end for a first sentence to stand in
    no_ends = str.maketrans("", "", ".?!")
    untitled = _corpus(tmp_path / "u", [{**d, "title": "", "text": d["text"].translate(no_ends)} for d in _demo_docs()])
    run_file = tmp_path / "first.run"
    run_file.write_text("q 0 d 1 1.0 x\n")
    cases = [
        ([str(untitled), "--title-queries", "3"], "title queries: none of the 42 documents has a title"),
        ([str(DEMO), "--title-queries", "3", "--first-stage", f"run:{run_file}"], "title queries need a first stage"),
    ]
    for extra, message in cases:
        assert main(["finetune", "--model", missing, "--output", str(tmp_path / "x"), *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit) as usage:
        main(["finetune", str(DEMO), "--model", missing, "--output", str(tmp_path / "x"), "--title-queries", "-1"])
    assert usage.value.code == 2 and "expected a whole number >= 0 (0: none), got '-1'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="title_queries must be an integer >= 0"):
        ft.finetune(DEMO, model=missing, output=tmp_path / "y", title_queries=True)  # type: ignore[arg-type]
