"""``finetune``: from a BEIR-layout dataset and the user's first stage to a reranker checked on held-out queries."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

from ..._local import CrossEncoderScorer
from ..evaluation._data import MIN_DEPTH, Dataset, Run, _require
from ..evaluation._first_stage import first_stage_run
from ._checks import check_first_stage, check_model, check_output, check_positive, parse_generator
from ._distill import distill_lists
from ._fusion import FusionChoice, check_fusion_weights, choose_rrf_weights, equal_weights, fusion_choices
from ._gate import GateResult, run_gate, write_outputs
from ._generate import GeneratedQueries, OllamaQueryGenerator, consistency_filter
from ._generate import generate_queries as _generate
from ._objective import Loss, check_loss
from ._pairs import NegativeFilter, TrainingPairs, mine_pairs
from ._select import DEV_SIGNIFICANCE, MIN_DEV_QUERIES, build_dev_set, check_significance
from ._split import MIN_TRAIN_QUERIES, holdout_split, split_queries
from ._titles import TitleQueries
from ._titles import title_queries as _titles
from ._train import check_freeze, require_training, train_cross_encoder


@dataclass
class FinetuneResult:
    """What :func:`finetune` did and decided.

    Attributes:
        output: the output folder.
        model_dir: the tuned cross-encoder (``output/model``), saved whatever the verdict.
        passed: the tuned reranker beat the base on held-out NDCG@10.
        verdict: the one-line verdict (also in ``report.json``).
        report: the content of ``report.json``.
        gate: the held-out comparison, runs included.
    """

    output: Path
    model_dir: Path
    passed: bool
    verdict: str
    report: dict[str, Any]
    gate: GateResult = field(repr=False)


def _like(scorer: CrossEncoderScorer, model: str) -> CrossEncoderScorer:
    """A scorer for ``model`` with every setting of ``scorer`` (so base and tuned are scored alike)."""
    return CrossEncoderScorer(
        model,
        device=scorer.device,
        dtype=scorer.dtype,  # type: ignore[arg-type]
        batch_size=scorer.batch_size,
        max_batch_tokens=scorer.max_batch_tokens,
        max_length=scorer.max_length,
        long_text=scorer.long_text,  # type: ignore[arg-type]
        window_tokens=scorer.window_tokens,
        window_stride=scorer.window_stride,
        max_windows=scorer.max_windows,
        quantize=scorer.quantize,  # type: ignore[arg-type]
        backend=scorer.backend,  # type: ignore[arg-type]
        trust_remote_code=scorer.trust_remote_code,
        prompt=scorer.prompt,  # the tuned model keeps the base's saved prompts (save_pretrained writes them)
        prompt_name=scorer.prompt_name,
        max_query_tokens=scorer.max_query_tokens,
    )


def _dev_split(train_ids: list[str], fraction: float, seed: int) -> tuple[list[str], list[str], str]:
    """``(train, dev, why there is no dev set or "")``: a seeded share of the judged training queries as dev queries."""
    if not fraction:
        return train_ids, [], "dev_fraction is 0: the last step is saved"
    if not train_ids:
        return (
            train_ids,
            [],
            (
                "no judged training queries: dev queries are judged ones (generated questions were chosen by the base "
                "reranker, so they would favour it), and the last step is saved"
            ),
        )
    trains, devs = holdout_split(train_ids, holdout=fraction, seed=seed)
    if len(devs) < MIN_DEV_QUERIES or len(trains) < MIN_TRAIN_QUERIES:
        return (
            train_ids,
            [],
            (
                f"{len(train_ids)} judged training queries are too few for a dev set of {fraction:g} (at least "
                f"{MIN_DEV_QUERIES} dev queries and {MIN_TRAIN_QUERIES} to train on): all are trained on and the last "
                "step is saved"
            ),
        )
    return trains, devs, ""


def _teacher_weights(
    data: Dataset, run: Run, judged: list[str], dev_ids: list[str], base: CrossEncoderScorer, depth: int, progress: bool
) -> FusionChoice:
    """The distillation teacher's RRF weights: chosen on the judged training queries that are trained on (not the
    dev queries, which must judge the distilled model without having shaped its teacher)."""
    held = set(dev_ids)
    chosen = [q for q in judged if q not in held]
    if not chosen:
        return equal_weights("the adapters' default: no judged training queries to choose on")
    return choose_rrf_weights(
        data,
        run,
        chosen,
        base,
        candidates=depth,
        chosen_on=f"chosen on the {len(chosen)} judged queries trained on, not the dev queries",
        progress=progress,
    )


def finetune(
    dataset: str | os.PathLike[str],
    *,
    model: str | CrossEncoderScorer,
    output: str | os.PathLike[str],
    first_stage: str = "bm25",
    holdout: float | None = None,
    train_split: str | None = None,
    eval_split: str = "test",
    generate_queries: str | None = None,
    generate_count: int = 100,
    title_queries: int = 0,
    candidates: int = 100,
    negatives: int = 4,
    negative_depth: int = 30,
    negative_filter: NegativeFilter = "base",
    epochs: float = 1.0,
    batch_size: int = 16,
    learning_rate: float = 2e-5,
    max_minutes: float | None = None,
    seed: int = 13,
    fusion: Literal["rrf"] | None = None,
    fusion_weights: Literal["learn"] | Sequence[float] = "learn",
    dev_fraction: float = 0.2,
    dev_evaluations: int = 10,
    dev_significance: float = DEV_SIGNIFICANCE,
    freeze_layers: int = 0,
    loss: Loss = "bce",
    ollama_host: str | None = None,
    progress: bool = False,
    plot: bool = True,
    callbacks: Sequence[Any] = (),
) -> FinetuneResult:
    """Fine-tune a cross-encoder on a BEIR-layout dataset and check it on held-out queries.

    Every input is checked before any long work (dataset files, split, first stage, output
    folder, extras, the model, the Ollama server). Then: the first stage retrieves for training
    and evaluation queries; training pairs are mined (:func:`mine_pairs`); the model is trained
    (:func:`train_cross_encoder`) and saved to ``output/model``; first stage, base and tuned are
    evaluated on the held-out queries and ``report.json``, ``first_stage.run``, ``base.run``,
    ``tuned.run`` and the plots are written.

    Args:
        dataset: a BEIR-layout folder (``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``).
        model: the base cross-encoder: a hub id or directory, or a configured
            :class:`~ce_rerank.CrossEncoderScorer` (its settings score base and tuned alike).
        output: a new or empty folder.
        first_stage: ``bm25``, ``dense:MODEL`` or ``run:FILE``: the retriever the reranker sits behind.
        holdout: fraction of judged queries held out when there is no training qrels file (default 0.3).
        train_split: ``qrels/<train_split>.tsv`` to train on (default: ``train`` when that file exists).
        eval_split: ``qrels/<eval_split>.tsv`` to evaluate on.
        generate_queries: ``ollama:MODEL``: train on questions an LLM writes for sampled passages.
        generate_count: passages to sample for generated questions.
        title_queries: also train on this many document titles as queries (0: none), sampled (seeded) among the
            documents with a title of at least 4 words and 20 words of text beside it; each title's positive is
            its own document and its negatives are the first stage's best candidates for it, all with their
            titles cut off; a document without a title stands in its first sentence when that has at most 30
            words (label-free; for corpora whose documents have titles). ``report.json``'s
            ``titles`` counts them and their pairs, and ``title_queries.jsonl`` lists them.
        candidates: first-stage candidates reranked per evaluation query.
        negatives: hard negatives per positive.
        negative_depth: negatives come from the first stage's best this many.
        negative_filter: ``"base"`` drops candidates the base reranker scores above every judged
            positive of the query (likely unjudged relevant documents); ``"none"`` keeps them.
        epochs, batch_size, learning_rate: training.
        max_minutes: training budget; training stops after the step that crosses it, and saves.
        seed: split, sampling and training seed.
        fusion: ``"rrf"``: also evaluate base and tuned fused with the first stage (RRF, k=60).
        fusion_weights: with ``fusion``, the RRF weights ``(retriever, cross-encoder)``, or ``"learn"``: for
            each reranker, the weights (``(1 - s, s)``, ``s`` from 0 to 1 by 0.1) with the best NDCG@10 on
            the judged queries it was not trained on (base: training and dev queries; a trained step: the
            dev queries; never the evaluation queries). ``report.json``'s ``fusion`` says what was chosen.
        dev_fraction: fraction of the judged training queries kept out of training as dev queries: the model
            is evaluated on them before the first step and ``dev_evaluations`` times during training,
            and the best evaluation's weights are saved (the base's when no step beats it). 0 saves
            the last step. Needs at least 3 dev queries and 3 left to train on; otherwise there is no
            dev set and the report says why.
        dev_evaluations: dev evaluations after the base, evenly spaced over the run (steps or budget).
        dev_significance: the best dev step is kept only when it beats the base on the dev queries by a
            paired t-test with p <= this (default 0.05); otherwise the base is saved. 1 keeps the best
            dev step whenever it is better.
        freeze_layers: keep the embeddings and the first N transformer layers at the base's weights (0:
            train all of them).
        loss: ``"bce"``: binary cross-entropy on each pair (cross-entropy for a two-output model);
            ``"lambda"``: sentence-transformers' listwise ``LambdaLoss`` over each query's documents, with
            the judged grades as gains (one-output models); ``"distill"``: ``MSELoss`` to a teacher's target
            for each of a query's ``negative_depth`` candidates and its positives, the teacher being the first
            stage fused (RRF, weights chosen on the judged queries trained on) with the base reranker, positives on
            top (see ``_distill``; ``negatives`` and ``negative_filter`` do not apply; one-output models). For
            title queries the first stage retrieves over the documents with their titles cut off, as the
            model sees them.
            ``report.json``'s ``teacher`` gives the weights.
        ollama_host: Ollama address (default ``OLLAMA_HOST`` or ``127.0.0.1:11434``).
        progress: progress bars on stderr.
        plot: write the per-query plots (needs matplotlib).
        callbacks: extra ``transformers.TrainerCallback`` objects for the trainer.
    """
    started = time.monotonic()
    for name, value in (("generate_count", generate_count), ("candidates", candidates)):
        check_positive(name, value)
    check_positive("negatives", negatives)
    if isinstance(title_queries, bool) or not isinstance(title_queries, int) or title_queries < 0:
        raise ValueError(f"title_queries must be an integer >= 0 (0: none), got {title_queries!r}")
    check_positive("negative_depth", negative_depth)
    if fusion not in (None, "rrf"):
        raise ValueError(f"fusion must be 'rrf' or None, got {fusion!r}")
    weights = check_fusion_weights(fusion_weights)
    if negative_filter not in ("base", "none"):
        raise ValueError(f"negative_filter must be 'base' or 'none', got {negative_filter!r}")
    if isinstance(dev_fraction, bool) or not isinstance(dev_fraction, (int, float)) or not 0 <= dev_fraction < 1:
        raise ValueError(f"dev_fraction must be >= 0 and < 1 (0: no dev queries), got {dev_fraction!r}")
    check_positive("dev_evaluations", dev_evaluations)
    check_significance(dev_significance)
    check_freeze(freeze_layers)
    check_positive("batch_size", batch_size)
    check_loss(loss, batch_size)
    if max_minutes is not None and not max_minutes > 0:
        raise ValueError(f"max_minutes must be > 0 or None (no limit), got {max_minutes!r}")
    gen_model = parse_generator(generate_queries) if generate_queries is not None else None
    check_first_stage(first_stage, generating=gen_model is not None, titles=title_queries > 0)
    split = split_queries(
        dataset,
        eval_split=eval_split,
        train_split=train_split,
        holdout=holdout,
        seed=seed,
        judged_training=gen_model is None,
    )
    titles: TitleQueries | None = None
    if title_queries:
        titles = _titles(dataset, count=title_queries, seed=seed, taken=split.dataset.queries)
    require_training()
    _require("pytrec_eval", "computing metrics")
    _require("scipy.stats", "the paired significance test")
    if plot:
        _require("matplotlib", "the per-query plot")
    if progress:
        _require("rich", "the progress bars")
    out = check_output(output)
    generator = OllamaQueryGenerator(gen_model, host=ollama_host, seed=seed) if gen_model is not None else None
    try:
        if generator is not None:
            generator.check()
        base = model if isinstance(model, CrossEncoderScorer) else CrossEncoderScorer(model)
        base.load()
        check_model(base, freeze_layers, loss)
        generated: GeneratedQueries | None = None
        if generator is not None:
            generated = _generate(split.dataset, base, generator, count=generate_count, seed=seed, progress=progress)
    finally:
        if generator is not None:
            generator.close()
    data = split.dataset
    if generated is not None:
        data = data.with_queries(generated.queries, generated.qrels())
    if titles is not None:
        data = data.with_queries(titles.queries, titles.qrels())
    depth = max(candidates, negative_depth, MIN_DEPTH)
    label, run = first_stage_run(data, first_stage, top_k=depth)
    # Dev queries come from the judged training queries only: generated questions were chosen by the base
    # reranker (the consistency filter), so a dev set of them would favour the base.
    train_ids, dev_ids, dev_note = _dev_split(list(split.train_queries), dev_fraction, seed)
    dev = build_dev_set(data, run, dev_ids, base, depth=candidates) if dev_ids else None
    if dev is not None and not len(dev):
        train_ids, dev_ids, dev = sorted(train_ids + dev_ids), [], None
        dev_note = "the first stage returned no candidates for the dev queries: all are trained on"
    if generated is not None:
        generated = consistency_filter(generated, data, run, base, depth=negative_depth)
        if not generated.queries and not train_ids:
            raise ValueError(
                f"none of the {generated.stats['generated']} generated questions passed the consistency filter (the "
                "base reranker must rank the source passage among its best 3): raise --generate-count or try another "
                "LLM"
            )
        train_ids += list(generated.queries)
    teacher: FusionChoice | None = None
    if loss == "distill":
        teacher = _teacher_weights(data, run, list(split.train_queries), dev_ids, base, negative_depth, progress)
        pairs = distill_lists(
            data, run, train_ids, base, rrf_weights=teacher.rrf_weights, depth=negative_depth, progress=progress
        )
    else:
        pairs = mine_pairs(
            data,
            run,
            train_ids,
            base,
            negatives=negatives,
            depth=negative_depth,
            negative_filter=negative_filter,
            seed=seed,
            progress=progress,
        )
    title_pairs = None
    if titles is not None:
        untitled = titles.untitled(data)
        if teacher is not None:
            # The teacher ranks what the student sees: the first stage retrieves for the titles again, over the
            # documents with their titles cut off (over the titled ones, a title finds its document's and its
            # neighbours' titles, which the student is never shown).
            bodies = replace(
                untitled,
                queries={q: untitled.queries[q] for q in titles.queries},
                qrels={q: untitled.qrels[q] for q in titles.queries},
            )
            _, title_run = first_stage_run(bodies, first_stage, top_k=depth)
            title_pairs = distill_lists(
                bodies,
                title_run,
                list(titles.queries),
                base,
                rrf_weights=teacher.rrf_weights,
                depth=negative_depth,
                progress=progress,
            )
        else:
            # Unfiltered: a title has one judged-by-construction positive, and round 15b measured them this way.
            title_pairs = mine_pairs(
                untitled,
                run,
                list(titles.queries),
                base,
                negatives=negatives,
                depth=negative_depth,
                negative_filter="none",
                seed=seed,
                progress=progress,
            )
        titles.stats["pairs"] = title_pairs.stats
    model_dir = out / "model"
    trained_on = pairs
    if title_pairs is not None:
        trained_on = TrainingPairs()
        trained_on.extend(pairs)
        trained_on.extend(title_pairs)
    training = train_cross_encoder(
        base.model_name,
        trained_on,
        model_dir,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        max_minutes=max_minutes,
        seed=seed,
        device=base.device,
        max_length=base.max_length,
        prompt=base.scored_prompt() or "",  # "" (none) where the base scores without one
        trust_remote_code=base.trust_remote_code,
        progress=progress,
        callbacks=callbacks,
        dev=dev,
        dev_evaluations=dev_evaluations,
        dev_significance=dev_significance,
        freeze_layers=freeze_layers,
        loss=loss,
    )
    tuned = _like(base, str(model_dir))
    choices: dict[str, FusionChoice] = {}
    if fusion is not None:
        choices = fusion_choices(
            weights,
            data,
            run,
            judged_training=list(split.train_queries),
            dev_ids=dev_ids,
            base=base,
            tuned=tuned,
            trained=training.best_step != 0,
            candidates=candidates,
            progress=progress,
        )
    gate = run_gate(
        data,
        run,
        split.eval_queries,
        base,
        tuned,
        first_stage_name=label,
        candidates=candidates,
        fusion=fusion,
        fusion_weights={name: c.rrf_weights for name, c in choices.items()},
        progress=progress,
    )
    verdict = gate.verdict
    if training.best_step == 0 and training.dev is not None:
        verdict += f"; {training.dev['decision']}"
    report: dict[str, Any] = {
        "dataset": data.name,
        "model": base.model_name,
        "tuned_model": str(model_dir),
        "first_stage_name": label,
        "candidates": candidates,
        **{name: gate.metrics[name] for name in gate.metrics},
        "comparisons": gate.comparisons,
        "verdict": verdict,
        "passed": gate.passed,
        "train_queries": train_ids,
        "dev_queries": dev_ids,
        "dev": training.dev if training.dev is not None else {"queries": 0, "reason": dev_note},
        "eval_queries": list(split.eval_queries),
        "eval_queries_without_candidates": sum(not run.get(q) for q in split.eval_queries),
        "split": {"method": split.method, **split.details},
        "pairs": pairs.stats,
        "teacher": teacher.as_dict() if teacher is not None else None,
        "generated": generated.stats if generated is not None else None,
        "titles": titles.stats if titles is not None else None,
        "fusion": {"method": fusion, "rrf_k": 60, **{n: c.as_dict() for n, c in choices.items()}} if fusion else None,
        "training": training.as_dict(),
        "per_query": {
            q: {name: gate.per_query[name][q]["ndcg@10"] for name in gate.per_query} for q in split.eval_queries
        },
    }
    lists: dict[str, list[dict[str, str]]] = {}
    if generated is not None:
        lists["generated_queries.jsonl"] = [
            {"_id": q, "text": text, "source": generated.sources[q], "passage": generated.passages[q]}
            for q, text in generated.queries.items()
        ]
    if titles is not None:
        lists["title_queries.jsonl"] = [
            {"_id": q, "text": text, "document": titles.documents[q]} for q, text in titles.queries.items()
        ]
    for name, rows in lists.items():
        (out / name).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    report["seconds"] = round(time.monotonic() - started, 1)
    write_outputs(
        out,
        gate,
        report,
        dataset_name=data.name,
        first_stage_name=label,
        model=base.model_name,
        candidates=candidates,
        plot=plot,
        written_before=[out / name for name in lists],
    )
    return FinetuneResult(
        output=out, model_dir=model_dir, passed=gate.passed, verdict=verdict, report=report, gate=gate
    )
