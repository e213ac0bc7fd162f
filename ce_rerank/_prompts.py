"""What a cross-encoder sees for one (query, text) pair: its prompt, and the tokens around the text.

sentence-transformers 6 gives a cross-encoder an instruction, and it is resolved the same way
here: an explicit ``prompt``, else ``prompt_name`` (one of the model's saved ``prompts``), else the
model's ``default_prompt_name``, else none; ``prompt=""`` turns a saved default off. Where the
prompt goes depends on the model, exactly as ``CrossEncoder.preprocess`` puts it:

- **chat-template models**: the instruction-following LLM rerankers that sentence-transformers 6
  loads as a causal LM with a yes/no ``LogitScore`` (Qwen3-Reranker, mxbai-rerank-v2,
  bge-reranker-v2-gemma). The pair is rendered through the tokenizer's chat template as
  ``[system: prompt] + [query: q] + [document: text]``; the template wraps its own words (and
  often a default instruction) around them, and the model reads the last position.
- **text-pair models** (BERT-family classifiers): the prompt is prepended to the query and the
  pair is tokenised as ``[CLS] prompt+query [SEP] text [SEP]``.

:class:`PairFrame` counts what a pair costs besides its text (special tokens, template, prompt,
query), so that windows are cut to fit and batches are budgeted on what the model really reads;
for chat-template models the pairs that come near the window are also measured as rendered,
because a text's first and last words can tokenise differently inside the template than alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PairFrame", "fit_query", "pair_frame", "resolve_prompt"]

# Text tokens held back from a chat-template model's window before pairs are measured: the words at
# a text's two edges may tokenise into a token or two more inside the template than on their own.
TEMPLATE_SLACK = 4
# The fewest text tokens a window may hold once the template, prompt and query are counted.
MIN_TEXT_TOKENS = 8


def resolve_prompt(model: Any, *, prompt: str | None, prompt_name: str | None) -> str | None:
    """The instruction to score with, resolved as ``CrossEncoder.predict`` resolves it.

    Raises:
        ValueError: ``prompt_name`` is not one of the model's saved prompts.
    """
    if prompt is not None:
        return prompt
    prompts: dict[str, str] = dict(getattr(model, "prompts", None) or {})
    if prompt_name is not None:
        if prompt_name not in prompts:
            saved = ", ".join(repr(k) for k in sorted(prompts)) or "none"
            raise ValueError(
                f"prompt_name={prompt_name!r} is not one of the model's saved prompts ({saved}); "
                "pass one of those, or prompt='...' with your own instruction"
            )
        return prompts[prompt_name]
    default = getattr(model, "default_prompt_name", None)
    if default is not None:
        return prompts.get(default)
    return None


@dataclass(frozen=True)
class PairFrame:
    """How one loaded model frames a (query, text) pair, for one prompt.

    Attributes:
        prompt: the resolved instruction passed to ``CrossEncoder.preprocess`` (``None``: none).
        templated: pairs are rendered through a chat template (message inputs).
        fixed: tokens of a pair with an empty query and an empty text (special tokens, template, prompt).
        query_budget: most tokens of the query itself; a longer query is cut to this.
    """

    prompt: str | None
    templated: bool
    fixed: int
    query_budget: int

    def overhead(self, model: Any, query: str) -> int:
        """Tokens a pair with this (already fitted) query costs besides its text."""
        if self.templated:
            return measure(model, self.prompt, [(query, "")])[0]
        tok = model.tokenizer
        first = (self.prompt or "") + query
        specials = int(tok.num_special_tokens_to_add(pair=True))
        return specials + len(tok(first, add_special_tokens=False, verbose=False)["input_ids"])

    @property
    def slack(self) -> int:
        """Text tokens held back before pairs are measured (chat-template models only)."""
        return TEMPLATE_SLACK if self.templated else 0


def measure(model: Any, prompt: str | None, pairs: Sequence[tuple[str, str]]) -> list[int]:
    """Token length of each pair as the model receives it (rendered and tokenised, not truncated)."""
    # verbose=False: a pair longer than the window is what is being measured, not an error to warn about
    features = model.preprocess(
        list(pairs), prompt=prompt, processing_kwargs={"text": {"truncation": False, "verbose": False}}
    )
    return [int(n) for n in features["attention_mask"].sum(dim=1).tolist()]


def pair_frame(
    model: Any,
    *,
    max_length: int,
    prompt: str | None,
    prompt_name: str | None,
    max_query_tokens: int | None,
) -> PairFrame:
    """Resolve the prompt and count the pair's fixed tokens for a loaded ``CrossEncoder``.

    The query budget is ``max_query_tokens`` or, by default, half of what the window leaves once the
    fixed tokens are counted (the rule the window planning always used).

    Raises:
        ValueError: ``prompt_name`` is unknown, or the template, prompt and query budget leave
            the text too little of the window.
    """
    resolved = resolve_prompt(model, prompt=prompt, prompt_name=prompt_name) or None
    first = model[0] if hasattr(model, "__getitem__") else None  # a CrossEncoder's input module
    modalities = getattr(first, "modality_config", None) or {}
    templated = "message" in modalities
    if templated:
        fixed = measure(model, resolved, [("", "")])[0]
    else:
        tok = model.tokenizer
        fixed = int(tok.num_special_tokens_to_add(pair=True))
        if resolved:
            fixed += len(tok(resolved, add_special_tokens=False, verbose=False)["input_ids"])
    room = max_length - fixed - (TEMPLATE_SLACK if templated else 0)
    if room <= MIN_TEXT_TOKENS:
        raise ValueError(
            f"the model's template and prompt take {fixed} of its {max_length}-token window, leaving "
            f"too little for a query and a text: shorten the prompt or raise max_length"
        )
    if max_query_tokens is None:
        budget = room // 2
    elif room - max_query_tokens < MIN_TEXT_TOKENS:
        raise ValueError(
            f"max_query_tokens={max_query_tokens} leaves the text fewer than {MIN_TEXT_TOKENS} tokens of the "
            f"model's {max_length}-token window ({fixed} go to special tokens, template and prompt): "
            f"set max_query_tokens to at most {room - MIN_TEXT_TOKENS}"
        )
    else:
        budget = max_query_tokens
    return PairFrame(prompt=resolved, templated=templated, fixed=fixed, query_budget=budget)


def fit_query(tokenizer: Any, query: str, budget: int) -> tuple[str, int]:
    """Cut ``query`` to its first ``budget`` tokens; returns (the query to score, its token count before).

    Cut at a token's end in the text, so the kept part is a prefix of the caller's query. Tokenised
    again, a prefix cut inside a word can come out a token longer; the cut then steps back a token.
    """
    enc = tokenizer(query, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    offsets = enc["offset_mapping"]
    total = len(offsets)
    if total <= budget:
        return query, total
    keep = budget
    while keep > 0:
        cut = query[: int(offsets[keep - 1][1])]
        if len(tokenizer(cut, add_special_tokens=False, verbose=False)["input_ids"]) <= budget:
            return cut, total
        keep -= 1
    return "", total  # pragma: no cover - a one-token prefix always fits a budget >= 1
