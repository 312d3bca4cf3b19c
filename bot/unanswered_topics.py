"""The unanswered queue by topic: the questions customers asked in other words about the same
thing, together, the most asked first. An FAQ gap that twelve customers ran into this week is
the one to fill first, and reads as one line instead of twelve.

Questions are compared by their embeddings (the retriever's embedder): a question joins the
topic of the first earlier one that is similar enough, by a threshold the knowledge base sets
(`Retriever.topic_threshold`), else starts a topic of its own.
"""

from dataclasses import dataclass

import numpy as np

from bot.feedback import FeedbackLog, UnansweredItem
from knowledge import Retriever


@dataclass(frozen=True)
class Topic:
    """Questions about one thing, the first asked first."""

    items: tuple[UnansweredItem, ...]

    @property
    def last_asked(self) -> float:
        return max(item.ts for item in self.items)


class UnansweredTopics:
    def __init__(self, feedback: FeedbackLog, retriever: Retriever) -> None:
        self._feedback = feedback
        self._retriever = retriever
        # Item id -> its question's vector, for the items listed last time: the desk lists the
        # queue every few seconds, and an item's question never changes.
        self._vectors: dict[str, np.ndarray] = {}

    async def topics(self, count: int = 100) -> list[Topic]:
        """The oldest `count` questions of the queue by topic: the topics asked most first, then
        the latest asked."""
        items = await self._feedback.unanswered(count)
        if not items:
            return []
        threshold = await self._retriever.topic_threshold()
        vectors = {}
        for item in items:  # one at a time: customers' questions, on the same thread, go first
            known = self._vectors.get(item.id)
            if known is None:
                known = await self._retriever.embedder.embed_query(item.question)
            vectors[item.id] = known
        self._vectors = vectors  # answered and dismissed questions are forgotten
        leaders: list[np.ndarray] = []
        groups: list[list[UnansweredItem]] = []
        for item in items:
            vector = vectors[item.id]
            if leaders:
                similar = np.stack(leaders) @ vector
                best = int(np.argmax(similar))
                if similar[best] >= threshold:
                    groups[best].append(item)
                    continue
            leaders.append(vector)
            groups.append([item])
        topics = [Topic(tuple(group)) for group in groups]
        return sorted(topics, key=lambda t: (-len(t.items), -t.last_asked))
