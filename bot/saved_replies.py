"""Replies operators keep for what they write again and again ("Thanks for waiting: I am checking
with our warehouse and will be back in a few minutes."): one list for the whole team, kept in
Redis, picked at the operator desk to put in the message box."""

import json
import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from bot.errors import ConversationError, StorageUnavailable
from bot.session_store import SessionStore

MAX_REPLIES = 200
MAX_TITLE = 60
MAX_TEXT = 4000


class BadSavedReply(ConversationError):
    """A saved reply that cannot be kept as given; the message says why."""


@dataclass(frozen=True)
class SavedReply:
    title: str  # what operators pick it by; unique
    text: str
    by: str  # who saved it last
    updated: float


class SavedReplies:
    def __init__(self, sessions: SessionStore) -> None:
        self._redis = sessions.redis
        self._key = sessions.keys.saved_replies

    async def all(self) -> list[SavedReply]:
        """Every saved reply, by title."""
        try:
            found = await self._redis.hgetall(self._key)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the saved replies: {exc}") from exc
        replies = [_reply(title.decode(), raw) for title, raw in found.items()]
        return sorted(replies, key=lambda r: r.title.casefold())

    async def find(self, title: str) -> SavedReply | None:
        """The reply saved under `title` (any case, spaces as typed), if there is one."""
        wanted = " ".join(title.split()).casefold()
        return next((r for r in await self.all() if r.title.casefold() == wanted), None)

    async def put(self, title: str, text: str, by: str) -> SavedReply:
        """Save `text` under `title`, replacing the reply of that title, if any."""
        title, text = " ".join(title.split()), text.strip()
        if not title or len(title) > MAX_TITLE:
            raise BadSavedReply(f"title: give one of 1 to {MAX_TITLE} characters.")
        if not text or len(text) > MAX_TEXT:
            raise BadSavedReply(f"text: give one of 1 to {MAX_TEXT} characters.")
        saved = SavedReply(title, text, by, time.time())
        record = json.dumps({"text": text, "by": by, "updated": saved.updated})
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hexists(self._key, title)
                pipe.hlen(self._key)
                known, count = await pipe.execute()
            if not known and count >= MAX_REPLIES:
                raise BadSavedReply(
                    f"The team keeps {MAX_REPLIES} saved replies at most: remove one first."
                )
            await self._redis.hset(self._key, title, record)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot save the reply: {exc}") from exc
        return saved

    async def remove(self, title: str) -> bool:
        """False if there was no reply of that title."""
        try:
            return bool(await self._redis.hdel(self._key, " ".join(title.split())))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot remove the saved reply: {exc}") from exc


def _reply(title: str, raw: bytes) -> SavedReply:
    record = json.loads(raw)
    return SavedReply(title, record["text"], record["by"], record["updated"])
