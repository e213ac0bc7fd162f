"""Planning a call's (query, window) pairs: which span of each text goes through the model, and its length.

A text that fits the model window beside the query is one pair; a longer one becomes overlapping
windows of ``window_tokens`` tokens every ``window_stride`` tokens (MaxP: the best window counts),
or is cut at the window (``long_text="truncate"``). Lengths count what the model sees (special
tokens, chat template and prompt included), so that batching can bound padded tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._prompts import PairFrame, measure


@dataclass
class Pair:
    doc: int
    span: tuple[int, int] | None  # character span of a window; None: the whole text
    length: int  # tokens, special tokens included


@dataclass
class Plan:
    pairs: list[Pair] = field(default_factory=list)
    truncated: int = 0  # texts cut at the window (long_text="truncate")
    windowed: int = 0  # texts split into windows
    capped: int = 0  # texts that needed more than max_windows windows


def plan_pairs(
    tokenizer: Any,
    framing: Any,
    frame: PairFrame,
    query: str,
    texts: Sequence[str],
    *,
    max_length: int,
    long_text: str,
    window_tokens: int,
    window_stride: int | None,
    max_windows: int,
) -> Plan:
    """Tokenise each text once and turn it into (query, span) pairs with token lengths.

    ``query`` is already cut to the query budget; texts get the rest of the window. ``framing`` is
    what the prompt code reads the chat template and saved prompts from (``_prompts``).
    """
    q_len = frame.overhead(framing, query)  # every token of a pair but the text's own
    budget = max(max_length - q_len - frame.slack, 1)
    enc = tokenizer(list(texts), add_special_tokens=False, return_offsets_mapping=True, verbose=False)
    window = min(window_tokens, budget)
    stride = min(window_stride or max(window // 2, 1), window)
    plan = Plan()
    pairs = plan.pairs
    cut: set[int] = set()  # pairs the tokenizer truncates (long_text="truncate")
    for doc, (ids, offsets) in enumerate(zip(enc["input_ids"], enc["offset_mapping"], strict=True)):
        n = len(ids)
        if n <= budget:
            pairs.append(Pair(doc, None, q_len + n))
            continue
        if long_text == "truncate":
            plan.truncated += 1
            cut.add(len(pairs))
            pairs.append(Pair(doc, None, max_length))
            continue
        plan.windowed += 1
        starts = list(range(0, n - window + 1, stride))
        if starts[-1] + window < n:
            starts.append(n - window)
        if len(starts) > max_windows:
            plan.capped += 1
            last = n - window
            k = max_windows
            starts = sorted({round(j * last / (k - 1)) for j in range(k)}) if k > 1 else [0]
        for s in starts:
            span = (int(offsets[s][0]), int(offsets[s + window - 1][1]))
            pairs.append(Pair(doc, span, q_len + window))
    if frame.templated:
        _fit_rendered(framing, frame, max_length, query, texts, pairs, cut, enc["offset_mapping"])
    return plan


def _fit_rendered(
    framing: Any,
    frame: PairFrame,
    max_length: int,
    query: str,
    texts: Sequence[str],
    pairs: list[Pair],
    cut: set[int],
    offsets: list[list[tuple[int, int]]],
) -> None:
    """Measure the pairs near the window as rendered; shorten any span that overflows.

    A chat template's words join a text's edge words, which can then tokenise differently than
    the text did alone (a few tokens either way). Pairs whose count (template, prompt and query
    exact, text counted alone) is within twice the slack of the window are rendered and counted
    exactly, and shortened if they overflow; the rest keep their count, off by those few edge
    tokens at most, which batching can afford, without tokenising every pair twice.
    """
    near = max_length - 2 * frame.slack
    todo = [i for i in range(len(pairs)) if i not in cut and pairs[i].length > near]
    for _ in range(8):
        chunks = []
        for i in todo:
            p = pairs[i]
            chunks.append(texts[p.doc] if p.span is None else texts[p.doc][p.span[0] : p.span[1]])
        if not chunks:
            return
        lengths = measure(framing, frame.prompt, [(query, c) for c in chunks])
        over = []
        for i, n in zip(todo, lengths, strict=True):
            pairs[i].length = n
            if n > max_length:
                over.append(i)
        if not over:
            return
        for i in over:  # drop the excess tokens from the end of the span (whole texts become one span)
            p = pairs[i]
            start, end = p.span or (0, len(texts[p.doc]))
            ends = [int(b) for a, b in offsets[p.doc] if a >= start and b <= end]
            keep = max(len(ends) - (p.length - max_length), 1)
            p.span = (start, ends[keep - 1])
        todo = over
    raise RuntimeError(  # pragma: no cover - the span shrinks every round
        "could not fit a text into the model window; please report this with the model id"
    )
