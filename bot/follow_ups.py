"""Operator messages a web chat's customer has not seen, to be e-mailed to the address they gave.

A customer who waits for a person in the web chat may leave before the person answers; they are
asked for an e-mail address (`AnswerPolicy.waiting`), kept with the conversation (its metadata's
`email`). Every operator message to such a conversation puts it in a queue (a sorted set, by when
it is due: the message's time plus `after_s`); the customer's pages mark what they showed
(`shown`). Once due, what no page showed and no e-mail carried yet goes out in one e-mail
(`due`, then `sent` or `failed`), by one worker.
"""

import time
from dataclasses import dataclass

from redis.exceptions import RedisError

from bot.errors import StorageUnavailable
from bot.messages import SessionInfo, Turn
from bot.session_store import SessionStore

CLAIM_S = 300  # one worker writes a conversation's e-mail; another may after this long


@dataclass(frozen=True)
class FollowUp:
    """An e-mail to write: the operator messages (`said`, oldest first) the customer of `info`
    has not seen, to `info.email`."""

    info: SessionInfo
    said: tuple[Turn, ...]


class FollowUps:
    def __init__(self, sessions: SessionStore, after_s: float = 300.0) -> None:
        """`after_s`: how long an operator message may stay unseen before it is e-mailed."""
        self._sessions = sessions
        self._keys = sessions.keys
        self._redis = sessions.redis
        self.after_s = after_s

    async def schedule(self, info: SessionInfo, said: Turn) -> None:
        """An operator wrote `said` to the customer of `info`: e-mail it if it is still unseen
        `after_s` later (and the customer left an address by then)."""
        if info.channel != "web" or said.role != "operator" or not info.email:
            return
        try:
            await self._redis.zadd(
                self._keys.follow_ups, {info.session_id: said.ts + self.after_s}, nx=True
            )
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot queue the e-mail: {exc}") from exc

    async def due(self, now: float) -> list[FollowUp]:
        """The e-mails due at `now`, each claimed for this worker (confirm with `sent` or
        `failed`). Conversations with nothing left to e-mail leave the queue."""
        try:
            found = await self._redis.zrangebyscore(self._keys.follow_ups, "-inf", now)
            due = []
            for raw in found:
                session_id = raw.decode()
                claim = self._keys.mailing(session_id)
                if not await self._redis.set(claim, 1, nx=True, ex=CLAIM_S):
                    continue  # another worker writes it
                info = await self._sessions.info(session_id, with_turns=True)
                said = await self._unseen(info)
                if said and info.email:
                    due.append(FollowUp(info, said))
                else:  # seen, erased, expired, or no address given
                    await self._settle(session_id)
                    await self._redis.delete(claim)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the e-mail queue: {exc}") from exc
        return due

    async def sent(self, mail: FollowUp) -> None:
        """`mail` was sent: its messages are never e-mailed again, and the conversation says so
        to the operators (a note)."""
        session_id, count = mail.info.session_id, len(mail.said)
        told = Turn(
            role="note",
            text=f"E-mailed to {mail.info.email}: {count} operator message"
            f"{'s' if count > 1 else ''} the customer had not seen.",
            ts=time.time(),
        )
        try:
            async with self._sessions.locked(session_id):  # not while it is being erased
                if await self._redis.exists(self._keys.meta(session_id)):
                    emailed = {"emailed_until": mail.said[-1].ts}
                    await self._sessions.append(session_id, [told], meta=emailed)
            await self._settle(session_id)
            await self._redis.delete(self._keys.mailing(session_id))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot record the e-mail: {exc}") from exc

    async def failed(self, mail: FollowUp, retry_s: float) -> None:
        """`mail` could not be sent: try again in `retry_s`."""
        session_id = mail.info.session_id
        try:
            await self._redis.zadd(
                self._keys.follow_ups, {session_id: time.time() + retry_s}, xx=True
            )
            await self._redis.delete(self._keys.mailing(session_id))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot queue the e-mail again: {exc}") from exc

    async def shown(self, session_id: str, now: float) -> None:
        """A page of the customer's showed them the conversation's operator messages up to
        `now` (the web chat's event stream sent one, or its history was read)."""
        meta = self._keys.meta(session_id)
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(meta, "shown_at", now)
                # A conversation erased meanwhile gets no lasting metadata back from this.
                pipe.expire(meta, self._sessions.ttl_s)
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot record what the customer saw: {exc}") from exc

    async def _unseen(self, info: SessionInfo) -> tuple[Turn, ...]:
        """The operator messages of `info` after what a page showed and an e-mail carried."""
        marks = await self._redis.hmget(
            self._keys.meta(info.session_id), "shown_at", "emailed_until"
        )
        since = max(float(value or 0) for value in marks)
        return tuple(t for t in info.turns if t.role == "operator" and t.ts > since)

    async def _settle(self, session_id: str) -> None:
        """Take the conversation off the queue, or put it back, due from its oldest message
        still unseen. (An operator message stored meanwhile is queued by `schedule`, or found
        here when that found the conversation queued still.)"""
        await self._redis.zrem(self._keys.follow_ups, session_id)
        fresh = await self._sessions.info(session_id, with_turns=True)
        if left := await self._unseen(fresh):
            await self.schedule(fresh, left[0])
