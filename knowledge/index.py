"""The in-memory search index: hybrid dense + BM25 retrieval over FAQ entries.

An entry is matched through its phrasings (question and alt_questions) and its answer. For a query,
candidates come from the closest dense vectors and the best BM25 documents; each candidate then gets
four scores, fused into the one that thresholds apply to:

- `phrasing`: the best cosine similarity between the query and one of the entry's phrasings;
- `centroid`: cosine similarity to the mean of its phrasings (rewards entries that many phrasings
  support, not one stray one);
- `answer`: cosine similarity to its answer;
- `lexical`: the best BM25 score among its phrasings, divided by the score a phrasing matching
  every query word would get (so it says how much of the question the words cover, in [0, 1]).

`final = (phrasing + 0.3 centroid + 0.3 answer + 0.5 lexical) / 2.1`, so it stays in [-1, 1].
"""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import bm25s
import numpy as np
import Stemmer
from threadpoolctl import ThreadpoolController

from knowledge.entry import FaqEntry
from knowledge.lexical import LexicalIndex
from knowledge.vectors import VectorRows

WEIGHTS: Mapping[str, float] = {"phrasing": 1.0, "centroid": 0.3, "answer": 0.3, "lexical": 0.5}
_TOTAL = sum(WEIGHTS.values())
_CANDIDATES = 64  # rows taken from each of the dense and the lexical side before exact scoring


@dataclass(frozen=True)
class Hit:
    entry: FaqEntry
    score: float  # the fused score, in [-1, 1]; thresholds apply to it
    scores: Mapping[str, float] = field(default_factory=dict)  # the scores it came from


@dataclass
class _Slot:
    entry: FaqEntry
    rows: list[int]  # dense rows of its phrasings
    answer_row: int
    centroid: np.ndarray


class SearchIndex:
    """Entries and their vectors, searchable; `upsert`/`remove` update it in place."""

    def __init__(self, dimensions: int, ann_threshold: int = 20_000) -> None:
        self.dimensions = dimensions
        self._rows = VectorRows(dimensions, ann_threshold)
        self._slots: dict[str, _Slot] = {}
        self._row_owner: list[str | None] = []
        self._stemmer = Stemmer.Stemmer("english")
        self._lexical: LexicalIndex | None = None
        self._lexical_stale: set[str] = set()  # entries changed since the BM25 index was built
        self._blas = ThreadpoolController()

    def __len__(self) -> int:
        return len(self._slots)

    @classmethod
    def build(
        cls, entries: list[FaqEntry], vectors: np.ndarray, ann_threshold: int = 20_000
    ) -> "SearchIndex":
        """An index of `entries`; `vectors` holds the rows of `texts_of(e)` for each in turn."""
        index = cls(vectors.shape[1], ann_threshold)
        index._rows.adopt(vectors)
        index._row_owner = [None] * len(vectors)
        start = 0
        for entry in entries:
            count = len(entry.texts) + 1
            index._place(entry, list(range(start, start + count)), vectors[start : start + count])
            start += count
        index.rebuild_lexical()
        return index

    def entries(self) -> list[FaqEntry]:
        return [s.entry for s in self._slots.values()]

    @staticmethod
    def texts_of(entry: FaqEntry) -> list[str]:
        """The texts to embed for an entry, in the order `upsert` expects their vectors."""
        return [*entry.texts, entry.answer or entry.question]

    def phrasing_vector(self, entry_id: str, position: int) -> np.ndarray:
        """The stored vector of one phrasing (0 = the question) of an entry."""
        return self._rows.get([self._slots[entry_id].rows[position]])[0]

    def upsert(self, entry: FaqEntry, vectors: np.ndarray) -> None:
        """Add or replace `entry`; `vectors` are the unit embeddings of `texts_of(entry)`."""
        if entry.id in self._slots:
            self.remove(entry.id)
        rows = self._rows.add(vectors)  # may reuse the rows of removed entries
        if max(rows) >= len(self._row_owner):
            self._row_owner.extend([None] * (max(rows) + 1 - len(self._row_owner)))
        self._place(entry, rows, vectors)
        self._lexical_stale.add(entry.id)

    def _place(self, entry: FaqEntry, rows: list[int], vectors: np.ndarray) -> None:
        for row in rows:
            self._row_owner[row] = entry.id
        centroid = vectors[:-1].mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-9)
        self._slots[entry.id] = _Slot(entry, rows[:-1], rows[-1], centroid.astype(np.float32))

    def remove(self, entry_id: str) -> None:
        slot = self._slots.pop(entry_id, None)
        if slot is None:
            return
        for row in [*slot.rows, slot.answer_row]:
            self._row_owner[row] = None
        self._rows.remove([*slot.rows, slot.answer_row])
        self._lexical_stale.add(entry_id)

    @property
    def lexical_stale(self) -> bool:
        return bool(self._lexical_stale) or (self._lexical is None and bool(self._slots))

    @property
    def approximate(self) -> bool:
        """Whether dense candidates come from the approximate (IVF) index."""
        return self._rows.approximate

    def rebuild_lexical(self) -> None:
        """Re-index every phrasing for BM25 now (bm25s has no incremental update)."""
        self.install_lexical(*self.build_lexical(*self.lexical_snapshot()))

    def lexical_snapshot(self) -> tuple[list[tuple[str, str]], set[str]]:
        """What to index, taken on the event loop so that a thread can build from it."""
        docs = [(s.entry.id, t) for s in self._slots.values() for t in s.entry.texts]
        return docs, set(self._lexical_stale)

    def build_lexical(
        self, docs: list[tuple[str, str]], stale: set[str]
    ) -> tuple[LexicalIndex | None, set[str]]:
        """Build a BM25 index (safe to run in a thread)."""
        return (LexicalIndex.build(docs, self._tokenize) if docs else None), stale

    def install_lexical(self, lexical: LexicalIndex | None, stale: set[str]) -> None:
        self._lexical = lexical
        self._lexical_stale -= stale

    def search(
        self,
        vector: np.ndarray,
        text: str,
        k: int = 5,
        without_entry: str | None = None,
        without_text: tuple[str, int] | None = None,
    ) -> list[Hit]:
        """The `k` best entries for a query, best first.

        `without_entry` leaves one entry out and `without_text` (entry id, phrasing position) one of
        its phrasings: calibration asks what the score would be if the FAQ lacked them.
        """
        if not self._slots:
            return []
        # One query's products are small: BLAS threads only wait for each other (measured on a
        # busy 2-core machine: 11 ms with them, 0.4 ms without, for 3,000 rows).
        with self._blas.limit(limits=1, user_api="blas"):
            return self._search(vector, text, k, without_entry, without_text)

    def _search(
        self,
        vector: np.ndarray,
        text: str,
        k: int,
        without_entry: str | None,
        without_text: tuple[str, int] | None,
    ) -> list[Hit]:
        lexical = self._lexical_scores(text, without_entry, without_text)
        candidates = self._candidates(vector, lexical, k)
        candidates.discard(without_entry)  # type: ignore[arg-type]
        if not candidates:
            return []
        ids = list(candidates)
        table = self._score_many(ids, vector, lexical)  # rows: candidates; columns: WEIGHTS
        if without_text is not None and without_text[0] in candidates:
            at = ids.index(without_text[0])
            table[at] = self._score_without(without_text, vector, lexical)
        final = table @ np.array(list(WEIGHTS.values()), dtype=np.float32) / _TOTAL
        best = np.argsort(-final)[:k]
        return [
            Hit(
                self._slots[ids[i]].entry,
                round(float(final[i]), 4),
                {n: round(float(v), 4) for n, v in zip(WEIGHTS, table[i], strict=True)},
            )
            for i in best
        ]

    def _candidates(self, vector: np.ndarray, lexical: dict[str, float], k: int) -> set[str]:
        wanted = max(_CANDIDATES, 4 * k)
        found = {self._row_owner[r] for r in self._rows.nearest(vector, wanted)}
        best_lexical = sorted(lexical, key=lambda i: -lexical[i])[:wanted]
        return {i for i in found if i is not None} | set(best_lexical)

    def _score_many(
        self, ids: list[str], vector: np.ndarray, lexical: dict[str, float]
    ) -> np.ndarray:
        """The four scores of each entry in `ids`, as one row each, in the order of WEIGHTS."""
        slots = [self._slots[i] for i in ids]
        rows = [r for s in slots for r in s.rows]
        starts = np.cumsum([0] + [len(s.rows) for s in slots[:-1]])
        phrasing = np.maximum.reduceat(self._rows.get(rows) @ vector, starts)
        centroid = np.stack([s.centroid for s in slots]) @ vector
        answer = self._rows.get([s.answer_row for s in slots]) @ vector
        words = np.array([lexical.get(i, 0.0) for i in ids], dtype=np.float32)
        return np.stack([phrasing, centroid, answer, words], axis=1)

    def _score_without(
        self, without_text: tuple[str, int], vector: np.ndarray, lexical: dict[str, float]
    ) -> np.ndarray:
        """An entry's scores as if one of its phrasings were not there (for calibration)."""
        entry_id, position = without_text
        slot = self._slots[entry_id]
        rows = [r for n, r in enumerate(slot.rows) if n != position]
        answer = float((self._rows.get([slot.answer_row]) @ vector)[0])
        phrasing = central = answer  # with no phrasing left, only the answer can match
        if rows:
            kept = self._rows.get(rows)
            mean = kept.mean(axis=0)
            phrasing = float((kept @ vector).max())
            central = float(mean @ vector) / max(float(np.linalg.norm(mean)), 1e-9)
        return np.array([phrasing, central, answer, lexical.get(entry_id, 0.0)], dtype=np.float32)

    def _lexical_scores(
        self, text: str, without_entry: str | None, without_text: tuple[str, int] | None
    ) -> dict[str, float]:
        """Entry id -> its best BM25 score over its phrasings, relative to the query's best."""
        lexical = self._lexical
        if lexical is None:
            return {}
        tokens = self._tokenize([text])[0]
        if not tokens:
            return {}
        top, scores = lexical.top(tokens, 4 * _CANDIDATES)
        best: dict[str, float] = {}
        skip = -1
        if without_text is not None and without_text[0] in lexical.first:
            skip = lexical.first[without_text[0]] + without_text[1]
        for doc, value in zip(top.tolist(), scores.tolist(), strict=True):
            entry_id = lexical.docs[doc]
            if value <= 0 or doc == skip or entry_id == without_entry:
                continue
            if entry_id in self._lexical_stale or entry_id not in self._slots:
                continue  # changed since BM25 was built: its dense scores still count
            best[entry_id] = max(best.get(entry_id, 0.0), value)
        ceiling = lexical.ceiling(tokens)
        return {i: min(v / ceiling, 1.0) for i, v in best.items()} if ceiling > 0 else {}

    def _tokenize(self, texts: Iterable[str]) -> list[list[str]]:
        tokens = bm25s.tokenize(
            list(texts),
            stopwords="en",
            stemmer=self._stemmer.stemWords,
            return_ids=False,
            show_progress=False,
        )
        return [list(t) for t in tokens]
