"""Conversation state in Redis: the capped turn history of each session, and its lock."""

import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict

from redis.asyncio import Redis
from redis.exceptions import LockError, RedisError

from bot.errors import ConversationError, StorageUnavailable
from bot.keys import SessionKeys
from bot.messages import Source, Turn


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        keys: SessionKeys,
        ttl_s: int = 30 * 24 * 3600,
        max_turns: int = 200,
        lock_lease_s: float = 120.0,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl_s = ttl_s
        self._max_turns = max_turns
        self._lock_lease_s = lock_lease_s

    async def append(self, session_id: str, turns: Sequence[Turn]) -> None:
        """Store `turns` at the end of the history, trim it and refresh its TTL, atomically."""
        key = self._keys.history(session_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.rpush(key, *[json.dumps(asdict(t), ensure_ascii=False) for t in turns])
                pipe.ltrim(key, -self._max_turns, -1)
                pipe.expire(key, self._ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot save the conversation: {exc}") from exc

    async def history(self, session_id: str, last: int | None = None) -> list[Turn]:
        start = -last if last else 0
        try:
            raw = await self._redis.lrange(self._keys.history(session_id), start, -1)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the conversation: {exc}") from exc
        return [_turn(json.loads(item)) for item in raw]

    @asynccontextmanager
    async def locked(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session's lock, so turns of one session never interleave across workers."""
        lock = self._redis.lock(
            self._keys.lock(session_id),
            timeout=self._lock_lease_s,
            blocking_timeout=self._lock_lease_s,
        )
        try:
            acquired = await lock.acquire()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the session store: {exc}") from exc
        if not acquired:
            raise ConversationError("This conversation is busy with another message; try again.")
        try:
            yield
        finally:
            # If the lease ran out or Redis went away, the lock expires by itself.
            with suppress(LockError, RedisError):
                await lock.release()


def _turn(data: dict) -> Turn:
    data["sources"] = tuple(Source(**s) for s in data.get("sources", ()))
    return Turn(**data)
