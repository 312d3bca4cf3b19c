"""Which operators are there to answer customers: those whose operator desk, in use, listed
the handoff queue in the last `WATCHED_S` seconds, and those who said they are here (`/here` in
the Telegram team chat) for up to `ON_DUTY_S`. A customer who asks for a person while nobody is
there is told the answer may take a while."""

import time

from redis.exceptions import RedisError

from bot.errors import StorageUnavailable
from bot.session_store import SessionStore

WATCHED_S = 120  # a desk in a background tab may list the queue only once a minute
ON_DUTY_S = 12 * 3600  # an operator's `/here` lasts until `/away`, or at the latest this long


class Presence:
    def __init__(self, sessions: SessionStore) -> None:
        self._keys = sessions.keys
        self._redis = sessions.redis

    async def watched(self, operator: str | None = None) -> None:
        """Someone (`operator`, when known) is watching the queue now (the operator desk lists it
        every few seconds)."""
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.set(self._keys.watched, 1, ex=WATCHED_S)
                if operator:
                    pipe.zadd(self._keys.present, {operator: now})
                    pipe.zremrangebyscore(self._keys.present, "-inf", now - WATCHED_S)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc

    async def on_duty(self, operator: str, for_s: float = ON_DUTY_S) -> None:
        """`operator` is here to answer customers for the next `for_s` seconds, or until
        `off_duty`, without a desk open (a team that works in its Telegram chat says so)."""
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self._keys.on_duty, {operator: now + for_s})
                pipe.zremrangebyscore(self._keys.on_duty, "-inf", now)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc

    async def off_duty(self, operator: str) -> bool:
        """`operator` has gone; whether they had said they were here."""
        try:
            return bool(await self._redis.zrem(self._keys.on_duty, operator))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc

    async def present(self) -> list[str]:
        """The operators whose desk, in use, listed the queue in the last `WATCHED_S` seconds,
        and those who said they are here (`on_duty`)."""
        now = time.time()
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zrangebyscore(self._keys.present, now - WATCHED_S, "+inf")
                pipe.zrangebyscore(self._keys.on_duty, now, "+inf")
                at_desk, on_duty = await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc
        return sorted({name.decode() for name in [*at_desk, *on_duty]})

    async def staffed(self) -> bool:
        """Whether someone watched the queue within the last `WATCHED_S` seconds, or said they
        are here."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.exists(self._keys.watched)
                pipe.zcount(self._keys.on_duty, time.time(), "+inf")
                watched, on_duty = await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc
        return bool(watched or on_duty)
