"""BM25 over FAQ phrasings (bm25s), and a query's best documents picked from few candidates.

bm25s builds the index and its per-word document scores; a query's scores are their sum, as
bm25s adds them up. Picking the best from all documents that share a word with the query is then
most of a question's time at a million FAQ entries, where a common word ("how", "do") is in most
phrasings. `LexicalIndex.top` first sets a bar that the best documents must reach,
from the documents with the query's rarest words, and picks among the few that reach it
(measured at 1M entries, synthetic FAQ: the BM25 part of a question 26 ms -> 10 ms).

Skipping the common words' documents altogether (MaxScore, Turtle & Flood 1995) was tried and
measured slower here: the most a common word adds to a short phrasing is too close to the gaps
between the best scores, so too many candidates remain to be looked up.
"""

from collections.abc import Callable
from dataclasses import dataclass

import bm25s
import numpy as np

Tokenizer = Callable[[list[str]], list[list[str]]]


@dataclass(frozen=True)
class LexicalIndex:
    bm25: bm25s.BM25
    docs: list[str]  # BM25 document -> entry id
    first: dict[str, int]  # entry id -> its first BM25 document
    token_best: np.ndarray  # vocabulary id -> the highest score that word adds to any document
    typical: float  # the median of token_best: what an unknown word counts as in `ceiling`

    @classmethod
    def build(cls, docs: list[tuple[str, str]], tokenize: Tokenizer) -> "LexicalIndex":
        """An index of (entry id, phrasing) pairs, an entry's phrasings next to each other."""
        bm25 = bm25s.BM25()
        bm25.index(tokenize([t for _, t in docs]), show_progress=False)
        first: dict[str, int] = {}
        for n, (entry_id, _) in enumerate(docs):
            first.setdefault(entry_id, n)
        data, indptr = bm25.scores["data"], bm25.scores["indptr"]
        best = np.zeros(len(indptr) - 1, dtype=np.float32)
        filled = np.diff(indptr) > 0
        best[filled] = np.maximum.reduceat(data, indptr[:-1][filled])
        typical = float(np.median(best)) if len(best) else 1.0
        return cls(bm25, [i for i, _ in docs], first, best, typical)

    def ceiling(self, tokens: list[str]) -> float:
        """The score of a phrasing that matched every query word as well as any phrasing does.

        A word no phrasing contains counts as a typical word would (the question asks about
        something the FAQ does not mention), except numbers: order numbers and dates say
        nothing about which entry is meant.
        """
        vocab = self.bm25.vocab_dict
        return sum(
            float(self.token_best[vocab[t]]) if t in vocab else 0.0 if t.isdigit() else self.typical
            for t in tokens
        )

    def top(self, tokens: list[str], wanted: int) -> tuple[np.ndarray, np.ndarray]:
        """The (up to) `wanted` documents with the highest BM25 score for `tokens`, and their
        scores, in no particular order; documents sharing no word with the query never count.
        The same documents as ranking `bm25.get_scores(tokens)`, ties aside."""
        vocab = self.bm25.vocab_dict
        known = [vocab[t] for t in tokens if t in vocab]
        if not known:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        words, counts = np.unique(np.array(known, dtype=np.int64), return_counts=True)
        data, indices, indptr = (self.bm25.scores[k] for k in ("data", "indices", "indptr"))
        scores = np.zeros(self.bm25.scores["num_docs"], dtype=np.float32)
        for word, count in zip(words.tolist(), counts.tolist(), strict=True):
            start, end = int(indptr[word]), int(indptr[word + 1])
            values = data[start:end] if count == 1 else data[start:end] * np.float32(count)
            np.add.at(scores, indices[start:end], values)
        # Any `wanted` documents set a bar that the best `wanted` reach. Those with the query's
        # rarest words set a high one, which few documents pass: picking the best among them
        # is then cheap, where picking among every document that shares a word is not.
        rarest = np.argsort(indptr[words + 1] - indptr[words], kind="stable")
        some: list[np.ndarray] = []
        for word in words[rarest].tolist():
            some.append(indices[indptr[word] : indptr[word + 1]][: 4 * wanted])
            if sum(map(len, some)) >= wanted:
                break
        sample = some[0] if len(some) == 1 else np.unique(np.concatenate(some))
        if len(sample) >= wanted:
            bar = np.partition(scores[sample], len(sample) - wanted)[len(sample) - wanted]
            passed = np.flatnonzero(scores >= bar)
        else:  # fewer than `wanted` documents share a word with the query
            passed = np.flatnonzero(scores)
        return self._best(passed, scores[passed], wanted)

    @staticmethod
    def _best(docs: np.ndarray, scores: np.ndarray, wanted: int) -> tuple[np.ndarray, np.ndarray]:
        if len(docs) > wanted:
            keep = np.argpartition(-scores, wanted - 1)[:wanted]
            docs, scores = docs[keep], scores[keep]
        return docs, scores
