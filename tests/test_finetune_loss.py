"""ce-rerank finetune --loss lambda: the listwise lists, the grades they carry, and training on them.

Offline and fast: tiny random cross-encoders (tests/_models.py) and the demo corpus.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import ce_rerank.finetune as ft
from ce_rerank.evaluation import Dataset
from ce_rerank.workflows.cli import main
from ce_rerank.workflows.finetune._objective import listwise_groups, objective

DEMO = Path(__file__).resolve().parents[1] / "ce_rerank" / "data" / "demo"


@pytest.fixture
def demo(tmp_path: Path) -> Path:
    """A copy of the demo dataset (7 judged queries)."""
    return Path(shutil.copytree(DEMO, tmp_path / "demo"))


def _rows(spec: dict[str, tuple[int, int]]) -> tuple[list[str], list[float]]:
    """Query ids and labels for ``{qid: (positives, negatives)}``, positives first as mine_pairs adds them."""
    ids: list[str] = []
    labels: list[float] = []
    for qid, (pos, neg) in spec.items():
        ids += [qid] * (pos + neg)
        labels += [1.0] * pos + [0.0] * neg
    return ids, labels


@pytest.mark.parametrize(
    ("spec", "size", "lists"),
    [
        ({"a": (3, 12)}, 4, 4),  # 15 rows -> 4 lists, 3 positives: the reuse rule (1 positive + 3 negatives each)
        ({"a": (8, 32), "b": (1, 4)}, 16, 4),  # 40 rows -> 3 lists with 2-3 positives each; b fits one list
        ({"a": (1, 20)}, 8, 3),  # one positive, 20 negatives: it is reused, 7 negatives a list
        ({"a": (5, 0), "b": (2, 2)}, 4, 3),  # a query without negatives still trains (its grades can differ)
    ],
)
def test_listwise_lists_cover_every_row_fit_the_batch_and_each_hold_a_positive(
    spec: dict[str, tuple[int, int]], size: int, lists: int
) -> None:
    ids, labels = _rows(spec)
    groups = listwise_groups(ids, labels, size)
    assert len(groups) == lists
    assert sorted({i for g in groups for i in g}) == list(range(len(ids)))  # no row left out
    for g in groups:
        assert 2 <= len(g) <= size or len(ids) < 2
        assert len({ids[i] for i in g}) == 1  # one query a list
        assert any(labels[i] > 0 for i in g)  # something to rank above the rest
        assert len(set(g)) == len(g)
    negatives = [i for g in groups for i in g if labels[i] == 0]
    assert len(negatives) == len(set(negatives))  # only positives are ever reused
    assert listwise_groups(ids, labels, size) == groups  # deterministic


def test_listwise_positives_are_spread_evenly_over_a_query_lists() -> None:
    ids, labels = _rows({"a": (8, 32)})
    per_list = sorted(sum(labels[i] > 0 for i in g) for g in listwise_groups(ids, labels, 16))
    assert per_list == [2, 3, 3]


def test_mined_positives_carry_their_judged_grade_and_negatives_grade_zero() -> None:
    from conftest import FakeScorer

    corpus = {f"d{i}": "x" * (10 + i) for i in range(8)}
    data = Dataset(name="t", corpus=corpus, queries={"q": "query"}, qrels={"q": {"d1": 1, "d3": 3, "d5": 0}})
    run = {"q": {f"d{i}": float(10 - i) for i in range(8)}}
    pairs = ft.mine_pairs(data, run, ["q"], FakeScorer(), negatives=10, depth=8, negative_filter="none")
    grade = {p: g for p, g in zip(pairs.passages, pairs.grades, strict=True)}
    assert grade[corpus["d1"]] == 1.0 and grade[corpus["d3"]] == 3.0
    assert all(g == 0.0 for p, g, lab in zip(pairs.passages, pairs.grades, pairs.labels, strict=True) if lab == 0.0)
    assert corpus["d5"] in grade and grade[corpus["d5"]] == 0.0  # judged 0: a negative


def _graded_pairs() -> ft.TrainingPairs:
    """Two queries, each with a grade-2 and a grade-1 answer and four off-topic negatives."""
    pairs = ft.TrainingPairs()
    for qid, query, best, good in (
        ("q1", "capital of france", "The capital of France is Paris.", "Paris is in France."),
        ("q2", "largest planet", "Jupiter is the largest planet.", "Jupiter is a planet."),
    ):
        pairs.add(qid, query, best, 1.0, grade=2)
        pairs.add(qid, query, good, 1.0, grade=1)
        for i, text in enumerate(("Bananas are yellow.", "Cats sleep a lot.", "Rain is wet.", "Tea is hot.")):
            pairs.add(qid, query, f"{text} {i}", 0.0)
    return pairs


def test_the_lambda_objective_reads_each_list_with_its_grades(tiny_model_dir: str) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.cross_encoder.losses import LambdaLoss

    pairs = _graded_pairs()
    task = objective("lambda", CrossEncoder(tiny_model_dir), tiny_model_dir, pairs, [5] * len(pairs), 3)
    assert isinstance(task.loss, LambdaLoss)
    assert task.rows["query"] == ["capital of france"] * 2 + ["largest planet"] * 2
    assert task.rows["docs"][0] == ["The capital of France is Paris.", "Bananas are yellow. 0", "Rain is wet. 2"]
    assert task.rows["labels"][:2] == [[2.0, 0.0, 0.0], [1.0, 0.0, 0.0]]
    assert task.rows_per_step == 1 and task.pairs_per_row == 3.0


@pytest.mark.parametrize(("length", "passes"), [(300, 6), (100, 2), (20, 1)])
def test_on_cpu_a_lambda_list_runs_in_length_sorted_passes_of_about_512_tokens(
    tiny_model_dir: str, length: int, passes: int
) -> None:
    # one padded pass over a long list is several times slower on a CPU than a few short passes
    # (benchmarks/finetune.md, round 12): 300-token pairs go 1 a pass, 100-token pairs 5, 20-token pairs all 6
    from sentence_transformers.cross_encoder import CrossEncoder

    model = CrossEncoder(tiny_model_dir, device="cpu")
    pairs = _graded_pairs()
    lengths = [length + (i % 6) for i in range(len(pairs))]  # per query: the grade-2 answer shortest
    lengths[1] = lengths[6] = length - 1  # the grade-1 answers shorter still: they must move to the front
    task = objective("lambda", model, tiny_model_dir, pairs, lengths, 6)
    assert task.rows["docs"][0][:2] == ["Paris is in France.", "The capital of France is Paris."]
    assert task.rows["labels"][0] == [1.0, 2.0, 0.0, 0.0, 0.0, 0.0]  # the grades move with their documents

    calls = []
    hook = model.register_forward_hook(lambda module, args, out: calls.append(1))  # the loss calls model(tokens)
    try:
        row = 0
        task.loss([[task.rows["query"][row]], [task.rows["docs"][row]]], [torch.tensor(task.rows["labels"][row])])
    finally:
        hook.remove()
    assert len(calls) == passes


def _ordered(model_dir: str | Path, pairs: ft.TrainingPairs) -> float:
    """The share of same-query pairs of different grades that the model scores in the grades' order."""
    from sentence_transformers.cross_encoder import CrossEncoder

    scores = CrossEncoder(str(model_dir)).predict(list(zip(pairs.queries, pairs.passages, strict=True)))
    n = range(len(pairs))
    pairs_ = [
        (i, j) for i in n for j in n if pairs.query_ids[i] == pairs.query_ids[j] and pairs.grades[i] > pairs.grades[j]
    ]
    return sum(scores[i] > scores[j] for i, j in pairs_) / len(pairs_)


def test_lambda_training_puts_each_query_documents_in_the_order_of_their_grades(
    minilm_model_dir: str, tmp_path: Path
) -> None:
    # MiniLM's real encoder with a random head (the tiny random models did not learn this reliably);
    # 10 epochs of 2 lists take ~12 s on one core, and seeds 1-4 all reach 1.0
    pairs = _graded_pairs()
    result = ft.train_cross_encoder(
        minilm_model_dir, pairs, tmp_path / "m", batch_size=6, learning_rate=1e-4, epochs=10, seed=1, loss="lambda"
    )
    assert result.loss_function == "lambda" and result.steps == 20  # 2 lists an epoch, one a step
    assert result.pairs_seen == 120
    # grade 2 above grade 1 above the negatives: the random head orders under half of those pairs
    base, tuned = _ordered(minilm_model_dir, pairs), _ordered(tmp_path / "m", pairs)
    assert base < 0.6 and tuned > 0.9


def test_lambda_loss_needs_a_one_output_model_and_lists_of_two(
    tiny_two_label_model_dir: str, tiny_model_dir: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match=r"loss 'lambda' trains one relevance logit.*use --loss bce"):
        ft.train_cross_encoder(tiny_two_label_model_dir, _graded_pairs(), tmp_path / "a", loss="lambda")
    with pytest.raises(ValueError, match=r"batch size must be >= 2, got 1"):
        ft.train_cross_encoder(tiny_model_dir, _graded_pairs(), tmp_path / "b", loss="lambda", batch_size=1)
    with pytest.raises(ValueError, match=r"loss must be one of 'bce', 'lambda', 'distill', got 'mse'"):
        ft.train_cross_encoder(tiny_model_dir, _graded_pairs(), tmp_path / "c", loss="mse")  # type: ignore[arg-type]
    assert not any((tmp_path / n).exists() for n in "abc")


def test_cli_finetune_rejects_lambda_for_a_two_output_model_before_mining_or_training(
    tiny_two_label_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["finetune", str(demo), "--model", tiny_two_label_model_dir, "--output", str(out), "--loss", "lambda"]
    assert main([*argv, "--no-progress"]) == 2
    assert "use --loss bce" in capsys.readouterr().err
    assert not (out / "model").exists()


def test_cli_finetune_with_the_lambda_loss_trains_listwise_and_reports_it(
    tiny_model_dir: str, demo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "o"
    argv = ["finetune", str(demo), "--model", tiny_model_dir, "--output", str(out), "--first-stage", "bm25"]
    argv += ["--loss", "lambda", "--train-batch-size", "4", "--dev-fraction", "0", "--no-progress"]
    assert main(argv) in (0, 3)
    report = json.loads((out / "report.json").read_text())
    training = report["training"]
    assert training["loss_function"] == "lambda" and training["steps"] >= 1
    assert "LambdaLoss, lists of <= 4" in capsys.readouterr().out
    assert (out / "model" / "model.safetensors").exists()


def test_a_chat_template_llm_reranker_trains_with_the_lambda_loss(tiny_llm_reranker_dir: str, tmp_path: Path) -> None:
    # its score is one logit (yes against no) read from a causal LM, not a classification head
    result = ft.train_cross_encoder(
        tiny_llm_reranker_dir, _graded_pairs(), tmp_path / "m", batch_size=6, learning_rate=1e-3, loss="lambda"
    )
    assert result.loss_function == "lambda" and result.steps == 2
    assert (tmp_path / "m").is_dir()


def test_rows_built_without_grades_train_listwise_on_their_labels(tiny_model_dir: str) -> None:
    from sentence_transformers.cross_encoder import CrossEncoder

    pairs = ft.TrainingPairs(queries=["q"] * 3, passages=["a", "b", "c"], labels=[1.0, 0.0, 0.0], query_ids=["q"] * 3)
    task = objective("lambda", CrossEncoder(tiny_model_dir), tiny_model_dir, pairs, [3, 3, 3], 4)
    assert task.rows["labels"] == [[1.0, 0.0, 0.0]]
