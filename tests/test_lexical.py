"""The BM25 top documents found without scoring every document are the ones full scoring finds."""

import numpy as np
import pytest

from knowledge.lexical import LexicalIndex


def test_the_best_documents_are_those_that_scoring_every_document_ranks_first(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rng = np.random.default_rng(7)
    vocabulary = [f"w{n}" for n in range(3000)]

    def words(count: int) -> list[str]:
        # Zipf-distributed, like real text: a few words are in a large share of the phrasings.
        return [vocabulary[int(i) % len(vocabulary)] for i in rng.zipf(1.3, count)]

    docs = [(f"e{n // 2}", " ".join(words(int(rng.integers(3, 9))))) for n in range(20_000)]
    index = LexicalIndex.build(docs, lambda texts: [t.split() for t in texts])
    # How many documents each query scored in full before choosing the best.
    scored: list[int] = []
    best = LexicalIndex._best

    def counted(docs: np.ndarray, scores: np.ndarray, wanted: int) -> tuple[np.ndarray, ...]:
        scored.append(len(docs))
        return best(docs, scores, wanted)

    monkeypatch.setattr(LexicalIndex, "_best", staticmethod(counted))
    pruned = 0
    queries = [words(int(rng.integers(1, 8))) for _ in range(300)]
    queries += [["w1", "w1", "w2"], ["no-such-word"], ["w1", "no-such-word"]]
    for tokens in queries:
        wanted = 50
        scored.clear()  # a query with no known word scores nothing
        found, scores = index.top(tokens, wanted)
        vocab = index.bm25.vocab_dict
        known = [vocab[t] for t in tokens if t in vocab]
        expected = (
            index.bm25.get_scores_from_ids(known)
            if known
            else np.zeros(len(docs), dtype=np.float32)
        )
        matched = np.count_nonzero(expected)
        pruned += bool(scored) and scored[0] < matched
        assert len(found) == min(wanted, matched), tokens
        np.testing.assert_allclose(scores, expected[found], rtol=1e-5)
        if matched:
            ranked = np.sort(expected)[::-1]
            # Every document found is among the best; ties at the last place may differ.
            assert scores.min() >= ranked[min(wanted, matched) - 1] - 1e-5, tokens
    # Most questions were answered without scoring every document that shares a word.
    assert len(queries) / 2 < pruned < len(queries)
