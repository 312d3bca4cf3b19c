"""Adapting the embedder to one knowledge base, from the knowledge base alone.

An entry's phrasings (question and alt_questions) and its answer all mean the same thing to a
customer; the other entries are what they must not be confused with. The embedder is fine-tuned
contrastively on those pairs: each pair's two texts are pulled together and pushed away from the
other pairs in its batch, in both directions (sentence-transformers'
`MultipleNegativesSymmetricRankingLoss`, its trainer and its progress bar). No batch holds two pairs
of the same entry, since they would count as each other's negatives. No customer query, labelled or
not, is needed.

The result is a sentence-transformers model directory; `ANSWERDESK_EMBEDDER` points the servers at
it. Measured with all-MiniLM-L6-v2 (`kb eval`, queries never used for training): see the README.
"""

import math
import random
from dataclasses import dataclass

from knowledge.entry import FaqEntry

TUNING_FILE = "answerdesk_tuning.json"  # in the tuned model's directory: how it was made
PAIRS_PER_ENTRY = 32  # an entry with many phrasings must not dominate the training


@dataclass(frozen=True)
class TuningPlan:
    epochs: float = 3.0  # passes over the pairs …
    min_steps: int = 30  # … but at least this many optimizer steps (small FAQs) …
    max_steps: int = 1000  # … and at most this many (large ones: ~1-4 s per step on 2 cores)
    batch_size: int = 32
    learning_rate: float = 2e-5
    seed: int = 0

    def steps(self, pairs: int) -> int:
        wanted = math.ceil(self.epochs * pairs / self.batch_size)
        return min(self.max_steps, max(self.min_steps, wanted))


@dataclass(frozen=True)
class TuningReport:
    base: str
    entries: int
    pairs: int
    steps: int
    seconds: float
    first_loss: float
    last_loss: float
    threshold_shift: dict[str, float]  # added to the calibrated "answer" and "faq" thresholds


def training_pairs(
    entries: list[FaqEntry], per_entry: int = PAIRS_PER_ENTRY, seed: int = 0
) -> list[tuple[str, str, str]]:
    """(entry id, anchor, positive): every ordered pair of an entry's phrasings, and each phrasing
    with its answer; at most `per_entry` of them per entry, chosen at random."""
    rng = random.Random(seed)
    pairs = []
    for entry in entries:
        texts = entry.texts
        own = [(a, b) for a in texts for b in texts if a != b]
        if entry.answer and entry.answer != entry.question:
            own += [(t, entry.answer) for t in texts]
        if len(own) > per_entry:
            own = rng.sample(own, per_entry)
        pairs += [(entry.id, a, b) for a, b in own]
    return pairs
