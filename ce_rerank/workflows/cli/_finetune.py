"""``ce-rerank finetune``: adapt a cross-encoder to a BEIR-layout dataset and gate it on held-out queries."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ._common import _add_model_flags, _add_threads_flag, _number, _positive_int, _rrf_weights, _scorer

#: Exit status when the tuned reranker is not better than the base on held-out NDCG@10 (it is saved anyway).
EXIT_NOT_BETTER = 3


_fraction = _number(float, lambda x: 0 < x < 1, "a fraction between 0 and 1", " (e.g. 0.3)")
_dev_fraction = _number(float, lambda x: 0 <= x < 1, "a fraction >= 0 and < 1", " (0: no dev queries)")
_p_value = _number(float, lambda x: 0 < x <= 1, "a p-value > 0 and <= 1", " (e.g. 0.05; 1: no test)")
_positive_float = _number(float, lambda x: x > 0, "a number > 0")
_count = _number(int, lambda n: n >= 0, "a whole number >= 0", " (0: none)")


def _fusion_weights(text: str) -> str | tuple[float, float]:
    if text == "learn":
        return text
    try:
        return _rrf_weights(text)  # type: ignore[no-any-return]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("expected ", "expected learn or ", 1)) from None


def add_finetune_parser(sub: Any) -> None:
    """Register ``finetune`` on the subcommand parsers."""
    p = sub.add_parser(
        "finetune",
        help="fine-tune a cross-encoder on your corpus and first stage, checked on held-out queries",
        description="Train a cross-encoder on a BEIR-layout dataset with hard negatives from your first stage, then "
        "evaluate the first stage, the base and the tuned reranker on held-out queries. Writes DIR/model, "
        "DIR/report.json, DIR/{first_stage,base,tuned}.run and per-query plots. Exits 3 when the tuned model is "
        "not better than the base on held-out NDCG@10 (it is saved anyway). Needs pip install 'ce-rerank[train]'.",
    )
    p.add_argument("dataset", metavar="DATASET_DIR", help="folder with corpus.jsonl, queries.jsonl, qrels/*.tsv")
    _add_model_flags(p, default_model=None)
    p.add_argument("--output", required=True, metavar="DIR", help="a new or empty folder for the model and report")
    p.add_argument(
        "--first-stage",
        default="bm25",
        metavar="bm25|dense:MODEL|run:FILE",
        help="the retriever the reranker sits behind: hard negatives come from it (default bm25)",
    )
    p.add_argument(
        "--holdout",
        type=_fraction,
        default=None,
        help="fraction of judged queries held out for evaluation when there is no qrels/train.tsv (default 0.3)",
    )
    p.add_argument("--train-split", default=None, help="train on qrels/<NAME>.tsv (default: train, when present)")
    p.add_argument("--eval-split", default="test", help="evaluate on qrels/<NAME>.tsv (default test)")
    p.add_argument(
        "--generate-queries",
        default=None,
        metavar="ollama:MODEL",
        help="no judged training queries: a local LLM (Ollama, OLLAMA_HOST) writes questions for sampled passages",
    )
    p.add_argument(
        "--generate-count", type=_positive_int, default=100, help="passages to write questions for (default 100)"
    )
    p.add_argument(
        "--title-queries",
        type=_count,
        default=0,
        metavar="N",
        help="also train on N document titles as queries, each against its own document (titles cut off), with "
        "hard negatives from the first stage; a document without a title stands in its first sentence when that "
        "has at most 30 words: label-free (default 0)",
    )
    p.add_argument(
        "--candidates", type=_positive_int, default=100, help="first-stage candidates reranked per query (default 100)"
    )
    p.add_argument("--negatives", type=_positive_int, default=4, help="hard negatives per positive (default 4)")
    p.add_argument(
        "--negative-depth",
        type=_positive_int,
        default=30,
        help="hard negatives come from the first stage's best N (default 30)",
    )
    p.add_argument(
        "--negative-filter",
        choices=["base", "none"],
        default="base",
        help="'base': skip candidates the base reranker scores above every judged positive (likely unjudged "
        "relevant documents; the report counts them); 'none': keep them",
    )
    p.add_argument("--epochs", type=_positive_float, default=1.0, help="passes over the training pairs (default 1)")
    p.add_argument("--train-batch-size", type=_positive_int, default=16, help="pairs per training step (default 16)")
    p.add_argument("--learning-rate", type=_positive_float, default=2e-5, help="peak learning rate (default 2e-5)")
    p.add_argument(
        "--max-minutes",
        type=_positive_float,
        default=None,
        help="training budget: stop after the step that crosses it, and save (default: no limit)",
    )
    p.add_argument(
        "--dev-fraction",
        type=_dev_fraction,
        default=0.2,
        help="fraction of the training queries kept out of training to pick the best step on (the base "
        "included); 0: save the last step (default 0.2)",
    )
    p.add_argument(
        "--dev-evals",
        type=_positive_int,
        default=10,
        help="dev evaluations during training, evenly spaced over the steps or the budget (default 10)",
    )
    p.add_argument(
        "--dev-significance",
        type=_p_value,
        default=0.05,  # finetune's DEV_SIGNIFICANCE (not imported: the CLI starts without the training stack)
        metavar="P",
        help="keep the best dev step only when it beats the base on the dev queries by a paired t-test with "
        "p <= P, else save the base (default 0.05; 1: whenever it is better)",
    )
    p.add_argument(
        "--freeze-layers",
        type=int,
        default=0,
        metavar="N",
        help="keep the embeddings and the first N transformer layers at the base's weights (default 0: train all)",
    )
    p.add_argument(
        "--loss",
        choices=["bce", "lambda", "distill"],
        default="bce",
        help="'bce': binary cross-entropy on each pair (cross-entropy for a two-output model); 'lambda': "
        "sentence-transformers' listwise LambdaLoss over each query's documents, judged grades as gains, "
        "at most --train-batch-size a list; 'distill': MSE to a teacher's score for each of a query's "
        "--negative-depth candidates, the teacher being the first stage fused (RRF) with the base reranker, "
        "judged positives on top (one-output models for both) (default bce)",
    )
    p.add_argument("--seed", type=int, default=13, help="split, sampling and training seed (default 13)")
    p.add_argument(
        "--fusion", choices=["rrf"], default=None, help="also evaluate base and tuned fused with the first stage (RRF)"
    )
    p.add_argument(
        "--fusion-weights",
        type=_fusion_weights,
        default="learn",
        metavar="learn|W_RETRIEVER,W_CE",
        help="RRF weights for --fusion: learn (default: for each reranker, the weights with the best NDCG@10 on the "
        "judged queries it was not trained on) or two numbers, e.g. 1,1",
    )
    _add_threads_flag(p)
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_finetune)


def _cmd_finetune(args: argparse.Namespace) -> int:
    from ..evaluation._data import _require
    from ..finetune import _checks, _run
    from ..finetune._generate import OllamaQueryGenerator
    from ..finetune._split import split_queries
    from ..finetune._titles import title_queries
    from ..finetune._train import require_training

    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    # Everything cheap is checked before the model is loaded and any work starts.
    generating = args.generate_queries is not None
    if generating:
        _checks.parse_generator(args.generate_queries)
    _checks.check_first_stage(args.first_stage, generating=generating, titles=args.title_queries > 0)
    split_queries(
        args.dataset,
        eval_split=args.eval_split,
        train_split=args.train_split,
        holdout=args.holdout,
        seed=args.seed,
        judged_training=not generating,
    )
    if args.title_queries:
        title_queries(args.dataset, count=args.title_queries, seed=args.seed)
    require_training()
    for module, purpose in (
        ("pytrec_eval", "computing metrics"),
        ("scipy.stats", "the paired significance test"),
        ("matplotlib", "the per-query plot"),
        ("rich", "the progress bars and the table"),
    ):
        _require(module, purpose)
    _checks.check_output(args.output)
    if generating:  # the server and its model, before the reranker loads
        generator = OllamaQueryGenerator(_checks.parse_generator(args.generate_queries), seed=args.seed)
        try:
            generator.check()
        finally:
            generator.close()
    scorer = _scorer(args)
    result = _run.finetune(
        args.dataset,
        model=scorer,
        output=args.output,
        first_stage=args.first_stage,
        holdout=args.holdout,
        train_split=args.train_split,
        eval_split=args.eval_split,
        generate_queries=args.generate_queries,
        generate_count=args.generate_count,
        title_queries=args.title_queries,
        candidates=args.candidates,
        negatives=args.negatives,
        negative_depth=args.negative_depth,
        negative_filter=args.negative_filter,
        epochs=args.epochs,
        batch_size=args.train_batch_size,
        learning_rate=args.learning_rate,
        max_minutes=args.max_minutes,
        seed=args.seed,
        fusion=args.fusion,
        fusion_weights=args.fusion_weights,
        dev_fraction=args.dev_fraction,
        dev_evaluations=args.dev_evals,
        dev_significance=args.dev_significance,
        freeze_layers=args.freeze_layers,
        loss=args.loss,
        progress=not args.no_progress,
    )
    _print_report(result.report)
    if not result.passed:
        for line in _next_steps(args, result.report):
            sys.stdout.write(f"to try next: {line}\n")
    sys.stdout.write(
        f"wrote {result.output}: model/, report.json, "
        + ", ".join(f for f in result.report["files"] if f != "report.json")
        + "\n"
    )
    return 0 if result.passed else EXIT_NOT_BETTER


def _print_report(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..evaluation import METRICS

    pairs, training = report["pairs"], report["training"]
    table = Table(
        title=f"{report['dataset']}: {report['first_stage_name']} -> rerank top {report['candidates']}, "
        f"{len(report['eval_queries'])} held-out queries ({len(report['train_queries'])} trained on)",
        title_justify="left",
    )
    table.add_column("system")
    for m in METRICS:
        table.add_column(m, justify="right")
    for name in ("first_stage", "base", "tuned", "base+rrf", "tuned+rrf"):
        if name in report:
            table.add_row(name, *(f"{report[name][m]:.4f}" for m in METRICS))
    console = Console(file=sys.stdout, soft_wrap=True)
    console.print(table)
    teacher = report.get("teacher")
    if teacher:
        w = ", ".join(f"{x:g}" for x in teacher["rrf_weights"])
        rows = (
            f"{pairs['rows']} rows ({pairs['positives']} positives, {pairs['candidates']} candidates) with targets "
            f"from the first stage fused with the base, rrf_weights=({w}) ({teacher['chosen_on']}), MSELoss"
        )
    else:
        rows = (
            f"{pairs['pairs']} pairs ({pairs['positives']} positives, {pairs['negatives']} hard negatives; "
            f"{pairs['removed_as_false_negatives']} candidates dropped as likely false negatives)"
        )
    console.print(
        f"training: {rows}, {training['steps']} of {training['planned_steps']} steps, {training['precision']}, "
        + (f"LambdaLoss, lists of <= {training['batch_size']}, " if training.get("loss_function") == "lambda" else "")
        + f"{training['seconds']:.0f} s, "
        f"stopped: {training['stopped']}"
        + (
            f", embeddings and first {training['frozen_layers']} layer{'s' * (training['frozen_layers'] > 1)} frozen"
            if training.get("frozen_layers")
            else ""
        )
    )
    titles = report.get("titles")
    if titles:
        console.print(
            f"title queries: {titles['used']} titles (of {titles['eligible']} usable, {titles['documents']} "
            f"documents): "
            + (
                f"{titles['pairs']['rows']} more rows"
                if teacher
                else f"{titles['pairs']['pairs']} more pairs ({titles['pairs']['positives']} positives, "
                f"{titles['pairs']['negatives']} hard negatives)"
            )
        )
    dev = report["dev"]
    if dev.get("evaluations"):
        curve = ", ".join(f"{e['step']}: {e[dev['metric']]:.4f}" for e in dev["evaluations"])
        why = f" ({dev['decision']})" if dev["kept"] != "base" else ""  # for the base, the verdict says why
        console.print(
            f"dev ({dev['queries']} training queries kept out, {dev['metric']} by step): {curve}; "
            f"saved: {dev['kept']}{why}"
        )
    else:
        console.print(f"no dev set: {dev['reason']}")
    fusion = report.get("fusion")
    if fusion:
        console.print(_fusion_line(report, fusion))
    style = "green" if report["passed"] else "red"
    console.print(f"[{style}]{report['verdict']}[/]")


_TITLES_LEARNING_RATE = "5e-5"  # what round 20 of benchmarks/finetune.md measured with --title-queries
_FEW_DEV_QUERIES = 10  # below this, the dev test rarely tells a real rise from luck (benchmarks/finetune.md, round 21)
_DEV_FRACTION = 0.5  # what round 21 measured on MEDLINE, whose 5 dev queries had kept the base


def _next_steps(args: argparse.Namespace, report: dict[str, Any]) -> list[str]:
    """The options that lifted runs which kept the base (``benchmarks/finetune.md``) and that this run did not use."""
    from ..finetune._titles import usable_titles

    first = report["first_stage_name"]
    steps = []
    if not report.get("fusion"):
        steps.append(
            f"--fusion rrf evaluates the rerankers fused with {first} as well; in benchmarks/finetune.md (round 15) "
            "the fused tuned reranker ranked above BM25 alone on all four classic collections (none "
            "significantly), where the reranker alone did not"
        )
    titled = 0 if report.get("titles") or args.first_stage.startswith("run:") else usable_titles(args.dataset)
    if titled:
        steps.append(
            f"--title-queries {titled} trains on the corpus's {titled} usable document titles as queries too (no "
            "labels needed); on Cranfield they made the tuned reranker pass the gate and rank above BM25 alone, "
            "not significantly (benchmarks/finetune.md, round 16)"
        )
    below = report["base"]["ndcg@10"] < report["first_stage"]["ndcg@10"]
    if report.get("titles") and below and report["training"]["learning_rate"] < float(_TITLES_LEARNING_RATE):
        steps.append(
            f"--learning-rate {_TITLES_LEARNING_RATE}: with title queries, from a base below {first} alone (as "
            "here), it took the WikiQA model further than 2e-5 did on Cranfield and MEDLINE, to about BM25's level "
            "(benchmarks/finetune.md, round 20); not on CISI, and for the general model on Cranfield 2e-5 did better"
        )
    dev = report["training"].get("dev") or {}
    test = dev.get("test") or {}
    missed = dev.get("kept") == "base" and test.get("delta", 0) > 0  # the best step rose, not significantly
    if missed and dev["queries"] < _FEW_DEV_QUERIES and args.dev_fraction < _DEV_FRACTION:
        steps.append(
            f"--dev-fraction {_DEV_FRACTION:g}: the dev test kept the base on only {dev['queries']} dev queries (best "
            f"step {test['delta']:+.4f}, p={test['p_value']:.2g}); with half the training queries as dev queries, "
            "MEDLINE's runs kept a step on all four splits and ended above BM25 alone on three "
            "(benchmarks/finetune.md, round 21), at the cost of fewer queries to train on"
        )
    return steps


def _fusion_line(report: dict[str, Any], fusion: dict[str, Any]) -> str:
    """Which weights fused the tuned reranker, how that did against the first stage alone, and how to use it."""
    choice, name = fusion["tuned"], f"tuned+{fusion['method']}"
    w = ", ".join(f"{x:g}" for x in choice["rrf_weights"])
    cmp = report["comparisons"][f"{name}_vs_first_stage"]
    return (
        f"{name}: RRF (k={fusion['rrf_k']}) with rrf_weights=({w}) (retriever, cross-encoder; "
        f"{choice['chosen_on']}): held-out NDCG@10 {cmp['mean_b']:.4f} against {report['first_stage_name']} alone "
        f"{cmp['mean_a']:.4f} ({cmp['delta']:+.4f}; better {cmp['better']} / worse {cmp['worse']}; paired t-test "
        f'p={cmp["p_value"]:.3g}); to rerank this way: fusion="rrf", rrf_weights=({w})'
    )
