"""Choosing a knowledge base's answer thresholds from the knowledge base itself, without labels.

Leave-one-out: each phrasing of an entry stands in for a customer's question. Searched with the
whole entry left out, whatever comes first is wrong: its score is what a question the FAQ does not
cover, asked in the FAQ's own words, would get. These are the hardest out-of-scope questions there
are (same topic, same style), so the thresholds are quantiles of their scores:

- `answer`: at or above it the assistant answers; below it, it says it does not know. Three in four
  of the left-out questions score below it (real off-topic questions score far lower).
- `faq`: at or above it the operator's answer is given verbatim; 98% of them score below it.
- `suggest`: below `answer`, entries at or above it are offered as "did you mean" suggestions; a
  quarter of the left-out questions score below it. Same-topic questions the FAQ does not quite
  answer get the nearest entries to choose from; off-topic ones ("write me a poem") score far
  below it and get none.

Searched with only that phrasing left out, the entry should still come first: the share that does,
at or above `answer`, is reported as the expected in-scope acceptance (pessimistic for entries with
a single phrasing, which are then matched by their answer alone).
"""

import random
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from knowledge.errors import KnowledgeError
from knowledge.index import SearchIndex

ANSWER_QUANTILE = 75
FAQ_QUANTILE = 98
SUGGEST_QUANTILE = 25
FALLBACK_ANSWER = 0.55  # used until a knowledge base is calibrated
FALLBACK_FAQ = 0.75
FALLBACK_SUGGEST = 0.40
# Two customers' questions are about one topic when they are closer than this share of the pairs
# of phrasings of different FAQ entries (questions the FAQ itself tells apart) are.
TOPIC_QUANTILE = 99
FALLBACK_TOPIC = 0.70  # a knowledge base with fewer than two entries


@dataclass(frozen=True)
class Calibration:
    answer: float
    faq: float
    probes: int
    in_scope_accept: float  # of the in-scope probes: answered and right, at `answer`
    oos_reject: float  # of the out-of-scope probes: declined, at `answer`
    version: int  # the knowledge-base version it was computed on
    at: float
    embedder: str = ""  # whose scores they are: another embedder's scores need other thresholds
    suggest: float | None = None  # None: calibrated before suggestions existed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Calibration":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def thresholds(
    outside: list[float], shift: Mapping[str, float] | None = None
) -> tuple[float, float]:
    """The answer and verbatim thresholds for these scores of questions the FAQ does not cover."""
    shift = shift or {}
    answer = float(np.percentile(outside, ANSWER_QUANTILE)) + shift.get("answer", 0.0)
    faq = max(answer, float(np.percentile(outside, FAQ_QUANTILE)) + shift.get("faq", 0.0))
    return answer, faq


def suggest_threshold(
    outside: list[float], answer: float, shift: Mapping[str, float] | None = None
) -> float:
    """The lowest score of an entry offered as a suggestion (never above `answer`); shifted as
    the answer threshold is."""
    shifted = float(np.percentile(outside, SUGGEST_QUANTILE)) + (shift or {}).get("answer", 0.0)
    return min(answer, shifted)


def calibrate(
    index: SearchIndex,
    version: int,
    probes: int = 2000,
    seed: int = 0,
    embedder: str = "",
    shift: Mapping[str, float] | None = None,
) -> Calibration:
    """Thresholds for `index` (its vectors from `embedder`), from up to `probes` left-out
    phrasings; `shift` is added to them (an embedder tuned on this FAQ flatters the probes)."""
    entries = index.entries()
    if len(entries) < 2:
        raise KnowledgeError(
            f"Calibration needs at least 2 FAQ entries (the knowledge base has {len(entries)})."
        )
    phrasings = [(e, n) for e in entries for n in range(len(e.texts))]
    if len(phrasings) > probes:
        phrasings = random.Random(seed).sample(phrasings, probes)
    inside: list[tuple[float, bool]] = []
    outside: list[float] = []
    for entry, position in phrasings:
        text, vector = entry.texts[position], index.phrasing_vector(entry.id, position)
        hits = index.search(vector, text, k=1, without_text=(entry.id, position))
        if hits:
            inside.append((hits[0].score, hits[0].entry.id == entry.id))
        hits = index.search(vector, text, k=1, without_entry=entry.id)
        if hits:
            outside.append(hits[0].score)
    answer, faq = thresholds(outside, shift)
    return Calibration(
        answer=round(answer, 4),
        faq=round(faq, 4),
        suggest=round(suggest_threshold(outside, answer, shift), 4),
        probes=len(phrasings),
        in_scope_accept=round(sum(ok and s >= answer for s, ok in inside) / len(inside), 4),
        oos_reject=round(float(np.mean(np.array(outside) < answer)), 4),
        version=version,
        at=time.time(),
        embedder=embedder,
    )


def topic_threshold(index: SearchIndex, probes: int = 1500, seed: int = 0) -> float:
    """How similar (cosine) two customers' questions must be to count as asking the same thing:
    more similar than `TOPIC_QUANTILE`% of the pairs of phrasings of different entries, among up
    to `probes` phrasings. Chosen from the knowledge base, as the thresholds are."""
    phrasings = [(e.id, n) for e in index.entries() for n in range(len(e.texts))]
    if len(phrasings) > probes:
        phrasings = random.Random(seed).sample(phrasings, probes)
    owners = np.array([entry_id for entry_id, _ in phrasings])
    if len(set(owners)) < 2:
        return FALLBACK_TOPIC
    vectors = np.stack([index.phrasing_vector(entry_id, n) for entry_id, n in phrasings])
    first, second = np.triu_indices(len(phrasings), 1)
    similar = (vectors @ vectors.T)[first, second]
    return float(np.percentile(similar[owners[first] != owners[second]], TOPIC_QUANTILE))
