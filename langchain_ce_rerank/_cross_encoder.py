"""``HuggingFaceCrossEncoder``: LangChain's ``BaseCrossEncoder`` interface on the ce-rerank core."""

from __future__ import annotations

import inspect
from collections.abc import Iterable
from typing import Any

from langchain_core.cross_encoders import BaseCrossEncoder
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ce_rerank import DEFAULT_MODEL, CrossEncoderScorer


def _scorer_options() -> list[str]:
    """The keyword options of :class:`ce_rerank.CrossEncoderScorer`: what ``model_kwargs`` may hold."""
    params = inspect.signature(CrossEncoderScorer.__init__).parameters.values()
    return sorted(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


class HuggingFaceCrossEncoder(BaseModel, BaseCrossEncoder):
    """A LangChain cross-encoder model (``langchain_core.cross_encoders.BaseCrossEncoder``) on ce-rerank.

    A drop-in for ``langchain_community.cross_encoders.HuggingFaceCrossEncoder``, by the same name and
    constructor (``model_name``, ``model_kwargs``), so that code built on langchain-classic's
    ``CrossEncoderReranker`` switches with one import. Scoring goes through the ce-rerank core: the
    model is loaded lazily, once per process, and shared with every ``CrossEncoderRerank`` (LangChain
    or LlamaIndex) on the same model and settings; pairs are batched by token length; a document
    longer than the model window is scored in windows and its best window counts.

    Setup:
        ``pip install "ce-rerank[langchain]"`` (includes langchain-classic)

    Switch:
        .. code-block:: python

            # from langchain_community.cross_encoders import HuggingFaceCrossEncoder
            from langchain_ce_rerank import HuggingFaceCrossEncoder
            from langchain_classic.retrievers.document_compressors import CrossEncoderReranker

            model = HuggingFaceCrossEncoder(model_name="cross-encoder/ms-marco-MiniLM-L-6-v2",
                                            model_kwargs={"device": "cpu"})
            reranker = CrossEncoderReranker(model=model, top_n=3)
            model.score([("capital of France", "Paris is the capital of France."), ("capital of France", "Bananas.")])
            # two relevance_scores in [0, 1], one per pair, in input order

    Scores: ``relevance_score``, in [0, 1]: the sigmoid of the logit for one-output models (what
    langchain-community's class returns for them), the softmax probability of the "relevant" class
    for two-output models. Pairs may carry different queries; each query's texts are scored together.
    For the score keys in metadata, ``top_n``/``min_score`` and fusion, use ``CrossEncoderRerank``
    instead: ``CrossEncoderReranker`` keeps only the order.
    """

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model_name: str = DEFAULT_MODEL
    """Cross-encoder to score with: a Hugging Face hub id or a local directory."""
    model_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Options of ``ce_rerank.CrossEncoderScorer`` (e.g. ``device``, ``dtype``, ``max_length``,
    ``batch_size``, ``long_text``, ``window_tokens``, ``trust_remote_code``); checked at construction."""

    @model_validator(mode="after")
    def _check(self) -> HuggingFaceCrossEncoder:
        allowed = _scorer_options()
        unknown = sorted(set(self.model_kwargs) - set(allowed))
        if unknown:
            raise ValueError(
                f"model_kwargs {unknown} are not options of ce-rerank's scorer; choose from {allowed} "
                "(sentence-transformers' own CrossEncoder arguments such as automodel_args are not passed through)"
            )
        self._scorer()  # validates the values (device, dtype, ...) without loading the model
        return self

    def _scorer(self) -> CrossEncoderScorer:
        return CrossEncoderScorer(self.model_name, **self.model_kwargs)

    def score(self, text_pairs: Iterable[tuple[str, str]]) -> list[float]:
        """Score (query, text) pairs; one ``relevance_score`` in [0, 1] per pair, in input order.

        Raises:
            TypeError: a pair is not two strings.
            ValueError: a query is empty.
            ModelLoadError: the model cannot be loaded.
        """
        if isinstance(text_pairs, (str, tuple)) or not isinstance(text_pairs, Iterable):
            raise TypeError(
                f"text_pairs must be a list of (query, text) pairs, got {type(text_pairs).__name__}: "
                "wrap a single pair in a list"
            )
        by_query: dict[str, list[int]] = {}
        texts: list[str] = []
        for i, pair in enumerate(text_pairs):
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2 and all(isinstance(t, str) for t in pair)):
                raise TypeError(f"text_pairs[{i}] must be a (query, text) pair of strings, got {pair!r:.80}")
            by_query.setdefault(pair[0], []).append(i)
            texts.append(pair[1])
        out = [0.0] * len(texts)
        scorer = self._scorer()
        for query, positions in by_query.items():
            relevance = scorer.score(query, [texts[i] for i in positions]).relevance
            for i, value in zip(positions, relevance, strict=True):
                out[i] = value
        return out
