"""Feedback on replies, and the queue of questions the bot could not answer.

Every reply is remembered (question, reply, mode, sources) for the session's lifetime so a
👍/👎 can refer to it by id. Fallback replies and 👎 replies go onto the `unanswered` stream,
which operators read and turn into FAQ entries, or into another phrasing of an entry the
customer meant (for a question close to entries, those the bot suggested are listed with it).
"""

import json
import re
import time
from dataclasses import dataclass
from typing import Literal

from redis.exceptions import RedisError

from bot.errors import ConversationError, StorageUnavailable
from bot.messages import Reply
from bot.session_store import SessionStore
from bot.stats import ConversationStats
from knowledge import FaqEntry, KnowledgeStore, Retriever

Rating = Literal["up", "down"]


class UnknownReply(ConversationError):
    """No reply with this id in this session (wrong id, or the session expired)."""


class UnknownItem(ConversationError):
    """No unanswered question with this id (wrong id, or already answered)."""


@dataclass(frozen=True)
class UnansweredItem:
    id: str
    reason: Literal["fallback", "thumbs_down"]
    session_id: str
    question: str
    reply: str
    ts: float
    suggested: tuple[str, ...] = ()  # ids of the FAQ entries the reply offered


def reply_record(question: str, reply: Reply) -> dict[str, str | float]:
    """What is kept of a reply for feedback; stored with the turn in one transaction."""
    return {
        "question": question,
        "reply": reply.text,
        "mode": reply.mode,
        "sources": json.dumps([s.__dict__ for s in reply.sources]),
        "ts": time.time(),
    }


class FeedbackLog:
    def __init__(self, sessions: SessionStore, stats: ConversationStats | None = None) -> None:
        self._sessions = sessions
        self._stats = stats
        self._keys = sessions.keys
        self._redis = sessions.redis

    async def rate(self, session_id: str, reply_id: str, rating: Rating) -> None:
        key = self._keys.reply(session_id, reply_id)
        try:
            record = await self._redis.hgetall(key)
            if not record:
                raise UnknownReply(f"No reply {reply_id} in conversation {session_id}.")
            previous = record.get(b"rating", b"").decode()
            await self._redis.hset(key, mapping={"rating": rating, "rated_at": time.time()})
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot store the feedback: {exc}") from exc
        operator = record.get(b"operator", b"").decode()
        if self._stats is not None:
            await self._stats.rated(float(record[b"ts"]), rating, previous, operator)
        if operator:
            return  # a rating of an operator's help: no question for the FAQ
        if rating == "down" and previous != "down":
            await self.add(
                "thumbs_down",
                session_id,
                record[b"question"].decode(),
                record[b"reply"].decode(),
            )

    async def add(
        self,
        reason: Literal["fallback", "thumbs_down"],
        session_id: str,
        question: str,
        reply: str,
        suggested: tuple[str, ...] = (),
    ) -> str:
        fields = {
            "reason": reason,
            "session_id": session_id,
            "question": question,
            "reply": reply,
            "ts": time.time(),
            "suggested": json.dumps(list(suggested)),
        }
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(self._keys.unanswered, fields, maxlen=100_000)
                self._sessions.drop_expired(pipe, self._keys.unanswered)
                rid, _ = await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot record the unanswered question: {exc}") from exc
        return str(rid.decode())

    async def unanswered(self, count: int = 100) -> list[UnansweredItem]:
        """The oldest `count` questions still waiting for an operator (those older than a session
        lives are dropped first)."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                self._sessions.drop_expired(pipe, self._keys.unanswered)
                pipe.xrange(self._keys.unanswered, "-", "+", count)
                _, rows = await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the unanswered questions: {exc}") from exc
        return [_item(rid, fields) for rid, fields in rows]

    async def answer(
        self,
        item_id: str,
        answer: str,
        knowledge: KnowledgeStore,
        question: str | None = None,
        entry_id: str | None = None,
        by: str = "",
    ) -> FaqEntry:
        """Turn an unanswered question into an FAQ entry (live at once); drop it from the queue."""
        item = await self._item(item_id)
        text = (question or item.question).strip()
        entry = FaqEntry.from_dict(
            {
                "id": entry_id or _slug(text),
                "question": text,
                "answer": answer.strip(),
                "alt_questions": [item.question] if item.question.strip() != text else [],
            },
            where="new FAQ entry",
        )
        await knowledge.upsert(entry, by=by)
        await self._redis.xdel(self._keys.unanswered, item_id)
        return entry

    async def alias(
        self, item_id: str, entry_id: str, knowledge: KnowledgeStore, by: str = ""
    ) -> FaqEntry:
        """The customer meant an existing entry: its question becomes another phrasing of it
        (live at once, so the next customer asking so is answered); drop it from the queue."""
        item = await self._item(item_id)
        record = await knowledge.add_phrasing(entry_id, item.question, by=by)
        assert record.entry is not None
        await self._redis.xdel(self._keys.unanswered, item_id)
        return record.entry

    async def dismiss(self, item_id: str) -> None:
        """Drop a question from the queue without answering it (off-topic, spam, a test)."""
        try:
            dropped = await self._redis.xdel(self._keys.unanswered, item_id)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot change the unanswered questions: {exc}") from exc
        if not dropped:
            raise UnknownItem(f"No unanswered question with id {item_id}.")

    async def resolve(
        self, entry_id: str, retriever: Retriever, at: float, count: int = 200
    ) -> list[str]:
        """Drop from the queue's oldest `count` the questions the FAQ did not answer that entry
        `entry_id` now answers: it is their best match, scoring `at` (the answer threshold) or
        more. Their ids. A reply rated 👎 stays: its question was answered, and not well."""
        answered = []
        for item in await self.unanswered(count):
            if item.reason != "fallback":
                continue
            hits = await retriever.search(item.question, k=1)
            if hits and hits[0].entry.id == entry_id and hits[0].score >= at:
                answered.append(item.id)
        if answered:
            try:
                await self._redis.xdel(self._keys.unanswered, *answered)
            except RedisError as exc:
                raise StorageUnavailable(f"Cannot change the unanswered questions: {exc}") from exc
        return answered

    async def _item(self, item_id: str) -> UnansweredItem:
        rows = await self._redis.xrange(self._keys.unanswered, item_id, item_id)
        if not rows:
            raise UnknownItem(f"No unanswered question with id {item_id}.")
        return _item(*rows[0])


def _item(rid: bytes, fields: dict[bytes, bytes]) -> UnansweredItem:
    get = {k.decode(): v.decode() for k, v in fields.items()}
    return UnansweredItem(
        id=rid.decode(),
        reason="thumbs_down" if get["reason"] == "thumbs_down" else "fallback",
        session_id=get["session_id"],
        question=get["question"],
        reply=get["reply"],
        ts=float(get["ts"]),
        suggested=tuple(json.loads(get.get("suggested", "[]"))),
    )


def _slug(text: str) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())[:8]
    base = "-".join(words)[:60].strip("-") or "entry"
    return f"{base}-{int(time.time() * 1000) % 100000}"
