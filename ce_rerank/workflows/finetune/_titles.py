"""Training queries from the corpus itself: document titles as queries, their documents as positives.

A title says what its document is about in the collection's own words, so (title, body) is a label-free
positive pair, as in the title-body pairs of Chang et al. (ICLR 2020, "Pre-training tasks for
embedding-based large-scale retrieval"). The title is cut off every document these queries are trained
against (their positive and their negatives alike): otherwise the positive would be found by matching the
query word for word. Negatives are the first stage's best candidates for the title, as for judged queries.
No judgment and no evaluation query is read, so the held-out evaluation stays held out.

A document without a title uses its first sentence in its place, when that sentence is short enough to be
one (MEDLINE's abstracts start with their article's title, joined by a full stop): the same pair, or
otherwise a lead sentence against the rest of its text, as in the Inverse Cloze Task (Lee et al., ACL
2019, "Latent retrieval for weakly supervised open domain question answering").

Measured in ``benchmarks/finetune.md`` (rounds 15b and 16).
"""

from __future__ import annotations

import os
import random
import re
from collections.abc import Container, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..evaluation._data import Dataset, _read_jsonl

TITLE_PREFIX = "title-"
#: A title becomes a query only when it has at least this many words ...
MIN_TITLE_WORDS = 4
#: ... and the document has at least this many words beside it.
MIN_BODY_WORDS = 20
#: A document without a title uses its first sentence in its place when that has at most this many words.
MAX_LEAD_WORDS = 30
_SENTENCE_END = re.compile(r"(?<=\S)\s*[.?!]+\s+")


@dataclass
class TitleQueries:
    """Titles sampled as training queries.

    Attributes:
        queries: query id (``title-<doc id>``) -> the title.
        documents: query id -> the id of the document the title belongs to (its positive).
        bodies: document id -> its text without its title (or the first sentence standing in for it), for
            every document with one: what these queries are trained against.
        stats: counts for the report.
    """

    queries: dict[str, str] = field(default_factory=dict)
    documents: dict[str, str] = field(default_factory=dict)
    bodies: dict[str, str] = field(default_factory=dict)
    stats: dict[str, Any] = field(default_factory=dict)

    def qrels(self) -> dict[str, dict[str, int]]:
        return {q: {d: 1} for q, d in self.documents.items()}

    def untitled(self, data: Dataset) -> Dataset:
        """``data`` with the titles cut off the documents that have one (what these queries train against)."""
        return replace(data, corpus={**data.corpus, **self.bodies})


def _split_title(title: Any, text: Any) -> tuple[str, str]:
    title = " ".join(str(title or "").split())
    body = " ".join(str(text or "").split())
    if title and body.lower().startswith(title.lower()):  # Cranfield's text repeats its title
        body = body[len(title) :].lstrip(" .:;-")
    return title, body


def _lead_sentence(text: Any) -> tuple[str, str]:
    """The text's first sentence and the rest; ``("", text)`` when it has no sentence end or a long first one."""
    body = " ".join(str(text or "").split())
    end = _SENTENCE_END.search(body)
    if end is None or len(body[: end.start()].split()) > MAX_LEAD_WORDS:
        return "", body
    return body[: end.start()], body[end.end() :]


def _titled(dataset: str | os.PathLike[str]) -> Iterator[tuple[str, str, str, bool]]:
    """For each document: (id, title or short first sentence, the text beside it, whether it is a first
    sentence); the title is empty for a document with neither."""
    for _, obj in _read_jsonl(Path(dataset).expanduser() / "corpus.jsonl"):
        title, body = _split_title(obj.get("title"), obj.get("text"))
        lead = not title
        if lead:
            title, body = _lead_sentence(obj.get("text"))
        yield str(obj["_id"]), title, body, lead


def _usable(title: str, body: str) -> bool:
    return len(title.split()) >= MIN_TITLE_WORDS and len(body.split()) >= MIN_BODY_WORDS


def usable_titles(dataset: str | os.PathLike[str]) -> int:
    """How many documents of the corpus :func:`title_queries` could make a query of (read once, nothing kept)."""
    return sum(_usable(title, body) for _, title, body, _ in _titled(dataset))


def title_queries(
    dataset: str | os.PathLike[str], *, count: int, seed: int = 13, taken: Container[str] = ()
) -> TitleQueries:
    """Sample ``count`` documents (seeded) whose title has at least :data:`MIN_TITLE_WORDS` words and whose
    text beside it at least :data:`MIN_BODY_WORDS`; each one's title becomes a training query. A document
    without a title stands in its first sentence, when that has at most :data:`MAX_LEAD_WORDS` words.

    Args:
        dataset: the BEIR-layout folder (its ``corpus.jsonl``).
        count: how many titles; all the eligible ones when there are fewer (the stats say so).
        seed: the sampling seed.
        taken: query ids already in use (a title query must not collide with one).

    Raises:
        ValueError: no document has a usable title, or a title query id collides with a query id.
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"title_queries must be an integer >= 1, got {count!r}")
    bodies: dict[str, str] = {}
    eligible: list[str] = []
    titles: dict[str, str] = {}
    documents = leads = 0
    for doc_id, title, body, lead in _titled(dataset):
        documents += 1
        if not title:
            continue
        leads += lead
        bodies[doc_id] = body
        titles[doc_id] = title
        if _usable(title, body):
            eligible.append(doc_id)
    if not eligible:
        raise ValueError(
            f"title queries: none of the {documents} documents has a title (or, without one, a first sentence of "
            f"at most {MAX_LEAD_WORDS} words) of at least {MIN_TITLE_WORDS} words and {MIN_BODY_WORDS} words of "
            f"text beside it ({len(titles) - leads} have a title, {leads} a short first sentence): drop "
            "--title-queries for this corpus (--generate-queries ollama:MODEL writes questions for passages "
            "without titles)"
        )
    picked = random.Random(seed).sample(sorted(eligible), min(count, len(eligible)))
    out = TitleQueries(bodies=bodies)
    clashes = [q for q in (TITLE_PREFIX + d for d in picked) if q in taken]
    if clashes:
        raise ValueError(
            f"title query id {clashes[0]!r} is already a query id of the dataset: rename that query, or drop "
            "--title-queries"
        )
    for d in sorted(picked):
        out.queries[TITLE_PREFIX + d] = titles[d]
        out.documents[TITLE_PREFIX + d] = d
    out.stats = {
        "requested": count,
        "used": len(picked),
        "documents": documents,
        "with_title": len(titles) - leads,
        "lead_sentences": leads,
        "eligible": len(eligible),
        "min_title_words": MIN_TITLE_WORDS,
        "min_body_words": MIN_BODY_WORDS,
        "max_lead_words": MAX_LEAD_WORDS,
    }
    return out
