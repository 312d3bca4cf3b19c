"""Finding the FAQ entries closest to a customer's question."""

import asyncio
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from knowledge.entry import FaqEntry
from knowledge.store import KnowledgeStore


@dataclass(frozen=True)
class Hit:
    entry: FaqEntry
    score: float  # cosine similarity of the closest phrasing, in [-1, 1]


class TextEmbedder(Protocol):
    name: str

    async def embed(self, texts: list[str]) -> np.ndarray: ...

    async def embed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class _Index:
    version: int
    entries: list[FaqEntry]
    matrix: np.ndarray  # one unit row per phrasing
    owner: np.ndarray  # row -> entry position


class Retriever:
    """Dense retrieval: an entry scores the best cosine similarity among its phrasings.

    The index is rebuilt whenever the knowledge base's version in Redis changes, so an import
    made by another process is picked up at the next question.
    """

    def __init__(self, store: KnowledgeStore, embedder: TextEmbedder) -> None:
        self._store = store
        self._embedder = embedder
        self._index: _Index | None = None
        self._rebuild = asyncio.Lock()

    async def refresh(self) -> int:
        """Bring the index up to the stored version; returns that version."""
        version = await self._store.version()
        if self._index is not None and self._index.version == version:
            return version
        async with self._rebuild:
            if self._index is None or self._index.version != version:
                entries = await self._store.entries()
                texts = [t for e in entries for t in e.texts]
                owner = np.array(
                    [i for i, e in enumerate(entries) for _ in e.texts], dtype=np.int64
                )
                matrix = await self._embedder.embed(texts)
                self._index = _Index(version, entries, matrix, owner)
        return version

    async def search(self, query: str, k: int = 3) -> list[Hit]:
        await self.refresh()
        index = self._index
        if index is None or not index.entries:
            return []
        vector = await self._embedder.embed_query(query)
        scores = index.matrix @ vector
        best = np.full(len(index.entries), -1.0, dtype=np.float32)
        np.maximum.at(best, index.owner, scores)
        top = np.argsort(-best)[:k]
        return [Hit(index.entries[i], round(float(best[i]), 4)) for i in top]
