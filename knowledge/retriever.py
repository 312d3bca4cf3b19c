"""Finding the FAQ entries closest to a customer's question, with the index kept live.

Every search first compares the knowledge base's version in Redis with the index's (one GET). When
another process changed entries, the index applies just those changes (read from the change stream)
before answering, so an operator's edit reaches every worker at its next question. A change that
takes longer to apply (a large import whose texts still have to be embedded) is applied in the
background: questions meanwhile are answered from the index as it was, instead of waiting for it.
"""

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from knowledge.calibration import (
    FALLBACK_ANSWER,
    FALLBACK_FAQ,
    FALLBACK_SUGGEST,
    FALLBACK_TOPIC,
    Calibration,
    calibrate,
    topic_threshold,
)
from knowledge.entry import FaqEntry
from knowledge.index import Hit, SearchIndex
from knowledge.store import WHOLE_KB, KnowledgeStore

log = logging.getLogger(__name__)

_LEXICAL_INLINE = 20_000  # up to this many entries BM25 is rebuilt before the next answer
# How long a question waits for the index to take in a change before it is answered from the index
# as it was. An edited entry takes a few milliseconds; a 1,000-entry import took 16 s, during
# which every question waited.
CATCH_UP_WAIT_S = 0.25


class TextEmbedder(Protocol):
    name: str
    dimensions: int
    threshold_shift: Mapping[str, float]  # added to calibrated thresholds (a tuned embedder's)

    async def embed(self, texts: list[str]) -> np.ndarray: ...

    async def embed_query(self, text: str) -> np.ndarray: ...


@dataclass(frozen=True)
class Thresholds:
    answer: float  # at or above: the assistant answers
    faq: float  # at or above: the operator's answer, verbatim
    calibrated: bool
    suggest: float = FALLBACK_SUGGEST  # below `answer`, at or above: offered as "did you mean"


class Retriever:
    def __init__(
        self, store: KnowledgeStore, embedder: TextEmbedder, ann_threshold: int = 20_000
    ) -> None:
        self._store = store
        self._embedder = embedder
        self._ann_threshold = ann_threshold
        self._index: SearchIndex | None = None
        self._version = -1
        self._position = "0"  # last change-stream entry applied
        self._calibration: Calibration | None = None
        self._topic: tuple[int, float] | None = None  # (index version, topic threshold)
        self._lock = asyncio.Lock()
        self._lexical_task: asyncio.Task[None] | None = None
        self._catching_up: asyncio.Task[None] | None = None

    @property
    def embedder(self) -> TextEmbedder:
        return self._embedder

    @property
    def thresholds(self) -> Thresholds:
        c = self._calibration
        if c is None:
            return Thresholds(FALLBACK_ANSWER, FALLBACK_FAQ, calibrated=False)
        # A calibration stored before suggestions existed: the default, below its answer one.
        suggest = min(c.answer, FALLBACK_SUGGEST) if c.suggest is None else c.suggest
        return Thresholds(c.answer, c.faq, calibrated=True, suggest=suggest)

    @property
    def calibration(self) -> Calibration | None:
        return self._calibration

    async def refresh(self) -> int:
        """Bring the index up to the stored version; returns that version."""
        return await self._follow(wait_s=None)

    async def search(self, query: str, k: int = 3) -> list[Hit]:
        await self._follow(wait_s=CATCH_UP_WAIT_S)
        index = self._index
        if index is None or not len(index):
            return []
        vector = await self._embedder.embed_query(query)
        return index.search(vector, query, k)

    async def topic_threshold(self) -> float:
        """How similar two questions must be to be about one topic (`calibration.
        topic_threshold`), for the current entries."""
        await self._follow(wait_s=CATCH_UP_WAIT_S)
        index, version = self._index, self._version
        if index is None:
            return FALLBACK_TOPIC
        if self._topic is None or self._topic[0] != version:
            self._topic = (version, await asyncio.to_thread(topic_threshold, index))
        return self._topic[1]

    async def prepare(self, entries: list[FaqEntry]) -> None:
        """Embed `entries`' texts ahead of storing them (the vectors are cached in Redis), so
        that every worker's index takes them in without embedding them itself."""
        await self._vectors(entries)

    async def calibrate(self, probes: int = 400) -> Calibration:
        """Choose thresholds from the current entries and store them with the knowledge base."""
        await self.refresh()
        assert self._index is not None
        result = await asyncio.to_thread(
            calibrate,
            self._index,
            self._version,
            probes,
            0,
            self._embedder.name,
            self._embedder.threshold_shift,
        )
        await self._store.save_calibration(result.to_dict())
        self._calibration = result
        return result

    async def _follow(self, wait_s: float | None) -> int:
        """Catch up with the stored version if it moved, waiting up to `wait_s` (None: until
        done; also when there is no index yet to answer from). One catch-up runs at a time;
        every caller waits on it. Returns the version the index is at."""
        version = await self._store.version()
        if version == self._version:
            return version
        if self._catching_up is None or self._catching_up.done():
            self._catching_up = asyncio.create_task(self._catch_up_to_stored())
            self._catching_up.add_done_callback(_log_failure)
        if wait_s is None or self._index is None:
            await asyncio.shield(self._catching_up)
        else:
            await asyncio.wait({self._catching_up}, timeout=wait_s)
        return self._version

    async def _catch_up_to_stored(self) -> None:
        async with self._lock:
            if await self._store.version() != self._version:
                await self._catch_up()

    async def _catch_up(self) -> None:
        position = await self._store.last_change()
        changes = None
        if self._index is not None:
            changes = await self._store.changes_since(self._position)
        if changes is None or any(c.entry_id == WHOLE_KB for c in changes):
            version = await self._store.version()
            await self._rebuild(await self._store.entries())
        else:
            version = await self._store.version()
            changed = list(dict.fromkeys(c.entry_id for c in changes))
            current = {
                i: r.entry if r else None for i, r in (await self._store.get_many(changed)).items()
            }
            await self._apply([e for e in current.values() if e is not None])
            assert self._index is not None
            for entry_id, entry in current.items():
                if entry is None:
                    self._index.remove(entry_id)
            position = changes[-1].stream_id if changes else self._position
        self._version, self._position = version, position
        stored = await self._store.calibration()
        self._calibration = None if stored is None else Calibration.from_dict(stored)
        if self._calibration and self._calibration.embedder != self._embedder.name:
            log.info(
                "the stored answer thresholds were chosen for embedder %r, not %r: defaults apply "
                "until the knowledge base is calibrated again",
                self._calibration.embedder or "unknown",
                self._embedder.name,
            )
            self._calibration = None
        await self._update_lexical()

    async def _rebuild(self, entries: list[FaqEntry]) -> None:
        vectors = await self._vectors(entries)
        self._index = await asyncio.to_thread(
            SearchIndex.build, entries, vectors, self._ann_threshold
        )
        log.info("search index built: %d entries", len(entries))

    async def _apply(self, entries: list[FaqEntry]) -> None:
        assert self._index is not None
        vectors = await self._vectors(entries)
        start = 0
        for entry in entries:
            count = len(entry.texts) + 1
            self._index.upsert(entry, vectors[start : start + count])
            start += count

    async def _vectors(self, entries: list[FaqEntry]) -> np.ndarray:
        texts = [t for e in entries for t in SearchIndex.texts_of(e)]
        if not texts:
            return np.zeros((0, self._embedder.dimensions), dtype=np.float32)
        return await self._embedder.embed(texts)

    async def _update_lexical(self) -> None:
        index = self._index
        if index is None or not index.lexical_stale:
            return
        if len(index) <= _LEXICAL_INLINE:
            built = await asyncio.to_thread(index.build_lexical, *index.lexical_snapshot())
            index.install_lexical(*built)
        elif self._lexical_task is None or self._lexical_task.done():
            # Large knowledge bases: changed entries count by their dense scores meanwhile.
            self._lexical_task = asyncio.create_task(self._build_lexical(index))

    async def _build_lexical(self, index: SearchIndex) -> None:
        while index.lexical_stale and index is self._index:  # changes made during a build too
            built = await asyncio.to_thread(index.build_lexical, *index.lexical_snapshot())
            index.install_lexical(*built)


def _log_failure(task: "asyncio.Task[None]") -> None:
    """A catch-up that failed is tried again at the next question; meanwhile the index as it
    was answers (a caller waiting for it gets the error too)."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("the search index could not take in the latest changes: %s", exc)
