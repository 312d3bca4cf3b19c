"""Conversation state in Redis: turn history, session metadata, locks and delivery claims."""

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager, suppress
from dataclasses import asdict
from typing import Any, cast

from redis.asyncio import Redis
from redis.exceptions import LockError, LockNotOwnedError, RedisError

from bot.errors import ConversationError, StorageUnavailable
from bot.keys import SessionKeys
from bot.messages import SessionInfo, Source, State, Turn

log = logging.getLogger(__name__)


class SessionStore:
    def __init__(
        self,
        redis: Redis,
        keys: SessionKeys,
        ttl_s: int = 30 * 24 * 3600,
        max_turns: int = 200,
        lock_lease_s: float = 10.0,
        lock_wait_s: float = 120.0,
    ) -> None:
        """A turn holds its session's lock for `lock_lease_s` at a time and renews it while it
        runs, so a worker that dies mid-turn (SIGKILL, out of memory) blocks that session for at
        most the lease; a message waits up to `lock_wait_s` for another turn of its session."""
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self._max_turns = max_turns
        self._lock_lease_s = lock_lease_s
        self._lock_wait_s = lock_wait_s
        # session id -> (token, when) of a lock this process may still hold in Redis because
        # Redis failed while it was taken or released (a crash restored from the append-only file
        # brings the lock back). Released before the session's next turn here, instead of making
        # that turn wait out the lease.
        self._orphans: dict[str, tuple[bytes, float]] = {}

    async def append(
        self,
        session_id: str,
        turns: Sequence[Turn],
        channel: str | None = None,
        meta: Mapping[str, str | int | float] | None = None,
        reply: tuple[str, Mapping[str, str | float]] | None = None,
    ) -> None:
        """Store `turns` at the end of the history, trim it, update the session's metadata,
        remember a reply (id, record) for feedback, and refresh the TTLs, in one transaction."""
        history, info = self.keys.history(session_id), self.keys.meta(session_id)
        now = time.time()
        fields: dict[str, Any] = {"last_seen": now, **(meta or {})}
        if channel:
            fields["channel"] = channel
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                if turns:
                    pipe.rpush(history, *[json.dumps(asdict(t), ensure_ascii=False) for t in turns])
                    pipe.ltrim(history, -self._max_turns, -1)
                pipe.hsetnx(info, "created", now)
                pipe.hset(info, mapping=fields)
                pipe.expire(history, self.ttl_s)
                pipe.expire(info, self.ttl_s)
                if reply is not None:
                    key = self.keys.reply(session_id, reply[0])
                    pipe.hset(key, mapping=dict(reply[1]))
                    pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot save the conversation: {exc}") from exc

    def seen(self, pipe: Any, session_id: str, now: float) -> None:
        """Queue on `pipe`: the session's customer wrote at `now` (the recent conversations
        operators read), and forget the sessions silent for longer than a session lives."""
        pipe.zadd(self.keys.recent, {session_id: now})
        pipe.zremrangebyscore(self.keys.recent, "-inf", now - self.ttl_s)

    async def recent(
        self, count: int, before: float | None = None
    ) -> list[tuple[SessionInfo, float]]:
        """Up to `count` conversations, with their turns, and the time their customer wrote
        last, if that was before `before` (default: any time); the latest first."""
        try:
            found = await self.redis.zrevrangebyscore(
                self.keys.recent,
                f"({before}" if before else "+inf",
                "-inf",
                start=0,
                num=count,
                withscores=True,
            )
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot list the conversations: {exc}") from exc
        listed = [(await self.info(i.decode(), with_turns=True), at) for i, at in found]
        # Gone since (erased, expired), or reset and not written to again: nothing to read.
        return [(info, at) for info, at in listed if info.turns]

    async def find(
        self, words: str, count: int, before: float | None = None, looked_max: int = 5000
    ) -> list[tuple[SessionInfo, float]]:
        """Like `recent`, the conversations in which every one of `words` occurs (any case, in
        any message), or whose id begins with `words`; at most `looked_max` conversations are
        read, the latest first."""
        needles = words.casefold().split()
        if not needles:
            return await self.recent(count, before)
        found: list[tuple[SessionInfo, float]] = []
        looked, upper = 0, f"({before}" if before else "+inf"
        while len(found) < count and looked < looked_max:
            try:
                size = min(100, looked_max - looked)
                page = await self.redis.zrevrangebyscore(
                    self.keys.recent, upper, "-inf", start=0, num=size, withscores=True
                )
                async with self.redis.pipeline(transaction=False) as pipe:
                    for raw_id, _ in page:
                        pipe.lrange(self.keys.history(raw_id.decode()), 0, -1)
                    transcripts = await pipe.execute()
            except RedisError as exc:
                raise StorageUnavailable(f"Cannot search the conversations: {exc}") from exc
            for (raw_id, at), raw in zip(page, transcripts, strict=True):
                session_id = raw_id.decode()
                said = " ".join(t.text for t in map(turn_from_json, raw) if t.role != "system")
                said = said.casefold()
                if session_id.startswith(words.strip()) or all(n in said for n in needles):
                    found.append((await self.info(session_id, with_turns=True), at))
                    if len(found) == count:
                        break
            looked += len(page)
            if len(page) < size:
                break
            upper = f"({page[-1][1]}"
        return [(info, at) for info, at in found if info.turns]

    def drop_expired(self, pipe: Any, stream: str) -> None:
        """Queue on `pipe` the removal of `stream`'s entries older than a session lives (`ttl_s`):
        the unanswered queue and the outboxes keep customers' words no longer than sessions do."""
        oldest = f"{int((time.time() - self.ttl_s) * 1000)}-0"
        pipe.xtrim(stream, minid=oldest, approximate=False)

    async def history(self, session_id: str, last: int | None = None) -> list[Turn]:
        start = -last if last else 0
        try:
            raw = await self.redis.lrange(self.keys.history(session_id), start, -1)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the conversation: {exc}") from exc
        return [turn_from_json(item) for item in raw]

    async def info(self, session_id: str, with_turns: bool = False) -> SessionInfo:
        """The session's metadata (defaults for a new session), and its turns if asked."""
        try:
            raw = await self.redis.hgetall(self.keys.meta(session_id))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the conversation: {exc}") from exc
        meta = {k.decode(): v.decode() for k, v in raw.items()}
        turns = await self.history(session_id) if with_turns else []
        return SessionInfo(
            session_id=session_id,
            channel=meta.get("channel", "web"),
            created=float(meta.get("created", 0)),
            last_seen=float(meta.get("last_seen", 0)),
            state=cast(State, meta.get("state", "bot")),
            state_since=float(meta.get("state_since", 0)),
            operator=meta.get("operator") or None,
            fallbacks=int(meta.get("fallbacks", 0)),
            site=meta.get("site") or None,
            page=meta.get("page") or None,
            email=meta.get("email") or None,
            turns=turns,
        )

    async def reset(self, session_id: str) -> None:
        """Forget the conversation: history, metadata and any place in the handoff queue."""
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.delete(self.keys.history(session_id), self.keys.meta(session_id))
                pipe.zrem(self.keys.waiting, session_id)
                pipe.srem(self.keys.active, session_id)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reset the conversation: {exc}") from exc

    async def keep(self, key: str, record: Mapping[str, Any], what: str) -> None:
        """Store the hash `record` of one of the session's keys for the session's lifetime
        (`what` names it in the error: "the file")."""
        try:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(key, mapping=dict(record))
                pipe.expire(key, self.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot store {what}: {exc}") from exc

    async def claim_delivery(self, channel: str, message_id: str, ttl_s: int) -> bool:
        """True the first time this channel message id is seen within `ttl_s`."""
        try:
            return bool(
                await self.redis.set(self.keys.delivery(channel, message_id), 1, nx=True, ex=ttl_s)
            )
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the session store: {exc}") from exc

    @asynccontextmanager
    async def locked(self, session_id: str) -> AsyncIterator[None]:
        """Hold the session's lock (with a lease renewed while the turn runs), so turns never
        interleave across workers."""
        lock = self.redis.lock(
            self.keys.lock(session_id),
            timeout=self._lock_lease_s,
            blocking_timeout=self._lock_wait_s,
        )
        token = uuid.uuid4().hex.encode()
        try:
            await self._release_orphan(session_id, lock)
            acquired = await lock.acquire(token=token)
        except RedisError as exc:
            # Keep an orphan not yet released; else this acquire's SET may have landed.
            self._orphans.setdefault(session_id, (token, time.monotonic()))
            raise StorageUnavailable(f"Cannot reach the session store: {exc}") from exc
        if not acquired:
            raise ConversationError("This conversation is busy with another message; try again.")
        renewal = asyncio.create_task(self._renew(lock, session_id))
        try:
            yield
        finally:
            renewal.cancel()
            try:
                await lock.release()
            except LockError:
                pass  # the lease ran out: nothing left to release
            except RedisError:
                self._orphans[session_id] = (token, time.monotonic())

    async def _renew(self, lock: Any, session_id: str) -> None:
        """Renew `lock`'s lease every third of it until cancelled."""
        while True:
            await asyncio.sleep(self._lock_lease_s / 3)
            try:
                await lock.reacquire()
            except LockError:  # the lease ran out (this loop stalled): another turn may run
                log.warning("the lock of session %s expired during a turn", session_id)
                return
            except RedisError:  # Redis is away: the turn finds out when it stores its answer
                continue

    async def _release_orphan(self, session_id: str, lock: Any) -> None:
        orphan = self._orphans.get(session_id)
        if orphan is None:
            return
        token, since = orphan
        if time.monotonic() - since < self._lock_lease_s:
            with suppress(LockNotOwnedError):
                await lock.do_release(token)  # only if Redis still holds this very token
        del self._orphans[session_id]
        now = time.monotonic()  # forget other sessions' orphans whose lease has run out
        for stale in [s for s, (_, t) in self._orphans.items() if now - t >= self._lock_lease_s]:
            del self._orphans[stale]


def turn_from_json(raw: str | bytes) -> Turn:
    data = json.loads(raw)
    for name in ("sources", "suggestions"):
        data[name] = tuple(Source(**s) for s in data.get(name, ()))
    return Turn(**data)
