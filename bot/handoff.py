"""Handing a conversation to a human operator and back: bot -> pending_human -> human -> bot.

Customers wait in a queue (a sorted set by time of asking). Operator messages go into the
session's history and onto its channel's outbox (`bot.outbox`), from which the channel's
adapter delivers them. Every state change is a timestamped `system` turn in the history.
"""

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from redis.exceptions import RedisError

from bot.errors import ConversationError, StorageUnavailable
from bot.messages import Inbound, SessionInfo, State, Turn
from bot.outbox import Outbox, OutboxMessage
from bot.presence import Presence
from bot.session_store import SessionStore
from bot.stats import ConversationStats

TYPING_S = 6  # a customer's sign of typing shows this long (the widget sends one every 4 s)


class HandoffError(ConversationError):
    """An operator action that does not fit the session's state; the message says why."""


class UnknownSession(ConversationError):
    """No conversation with this id (it never existed, expired or was reset)."""


@dataclass(frozen=True)
class Waiting:
    """A customer who has just been put in line for a person."""

    session_id: str
    channel: str
    place: int  # 1: the next one an operator takes
    reason: str  # "customer asked for a human", "3 questions in a row the FAQ does not answer"
    staffed: bool  # a desk in use listed the queue in the last `WATCHED_S` seconds, or someone
    # said they are here (`HandoffDesk.on_duty`)
    back: str = ""  # outside the team's hours: when the customer was told it is back


@dataclass(frozen=True)
class TeamStatus:
    """Whether a customer who asks for a person now finds the team there."""

    here: bool  # someone has the operator desk open and in use, or said they are here
    # (`HandoffDesk.staffed`)
    back: str = ""  # away, outside its hours: when it is back ("tomorrow at 09:00 (… time)")
    usual_wait_s: float | None = None  # here: how long customers usually wait for a person


class HandoffNotifier(Protocol):
    """Tells the operators that a customer waits, and what they write while they wait or talk
    to an operator (adapters post it to their team chat). Both methods return at once: the
    customer's reply does not wait for a notification."""

    def waiting(self, call: Waiting) -> None:
        """Called once the customer's place in line is stored."""

    def wrote(self, info: SessionInfo, said: Inbound) -> None:
        """Called once the customer's message `said` (its text as stored), sent while waiting
        for or talking to a person (`info.state`, `info.operator`), is stored."""

    def changed(self, info: SessionInfo, note: str) -> None:
        """Called once an operator took the conversation (`info.state` is "human") or it went
        back to the assistant ("bot"); `note` says how ("taken by Olga", "handed back by
        Olga", "Olga silent for 60 min")."""

    def noted(self, info: SessionInfo, note: Turn) -> None:
        """Called once an operator's note on the conversation (`HandoffDesk.note`) is stored."""

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        """Called once an operator's message to the customer (`said`, with its `file`, if any)
        is stored; `via`: where they wrote it ("desk", or a notifier's own channel)."""

    def erased(self, session_id: str) -> None:
        """Called once the conversation was erased at the customer's request (`bot.erasure`):
        copies of what they wrote that the notifier made elsewhere go too."""


class QuietNotifier:
    """A `HandoffNotifier` that ignores every event: a notifier that acts on a few of them
    (a webhook on customers who wait, say) overrides only those."""

    def waiting(self, call: Waiting) -> None:
        """Nothing."""

    def wrote(self, info: SessionInfo, said: Inbound) -> None:
        """Nothing."""

    def changed(self, info: SessionInfo, note: str) -> None:
        """Nothing."""

    def noted(self, info: SessionInfo, note: Turn) -> None:
        """Nothing."""

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        """Nothing."""

    def erased(self, session_id: str) -> None:
        """Nothing."""


def state_turn(state: State, note: str, now: float) -> Turn:
    return Turn(role="system", text=f"state: {state} ({note})", ts=now)


class HandoffDesk:
    def __init__(
        self,
        sessions: SessionStore,
        stats: ConversationStats | None = None,
        notifiers: Sequence[HandoffNotifier] = (),
    ) -> None:
        """`stats`: where customers taken and their waits are counted; `notifiers`: told when a
        conversation changes hands."""
        self._sessions = sessions
        self._stats = stats
        self._notifiers = tuple(notifiers)
        self._keys = sessions.keys
        self._redis = sessions.redis
        self.outbox = Outbox(sessions)
        self.presence = Presence(sessions)

    async def enqueue(self, session_id: str, now: float) -> int:
        """Put the session in the queue (keeping its place if it is there); returns its place."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.zadd(self._keys.waiting, {session_id: now}, nx=True)
                pipe.delete(self._keys.reminded(session_id))  # a new wait is reminded of anew
                await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc
        return await self.place(session_id) or 1

    async def overdue(self, waited_s: float, now: float) -> list[Waiting]:
        """Customers who have waited `waited_s` or longer and were not reminded of yet, each
        claimed so that one worker reminds the operators once."""
        try:
            found = await self._redis.zrangebyscore(
                self._keys.waiting, "-inf", now - waited_s, withscores=True
            )
            calls, staffed = [], await self.presence.staffed() if found else False
            for place, (raw, since) in enumerate(found, start=1):
                session_id = raw.decode()
                if await self._redis.set(self._keys.reminded(session_id), 1, nx=True, ex=86400):
                    info = await self._sessions.info(session_id)
                    reason = f"still not taken after {_duration(now - since)}"
                    calls.append(Waiting(session_id, info.channel, place, reason, staffed))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc
        return calls

    async def in_line(self, now: float) -> list[Waiting]:
        """Everyone waiting for a person, first come first ("waiting for 12 min")."""
        try:
            found = await self._redis.zrange(self._keys.waiting, 0, -1, withscores=True)
            staffed = await self.presence.staffed()
            calls = []
            for place, (raw, since) in enumerate(found, start=1):
                info = await self._sessions.info(raw.decode())
                reason = f"waiting for {_duration(now - since)}"
                calls.append(Waiting(info.session_id, info.channel, place, reason, staffed))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc
        return calls

    async def waiting_count(self) -> int:
        try:
            return int(await self._redis.zcard(self._keys.waiting))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc

    async def place(self, session_id: str) -> int | None:
        """1 for the next customer an operator will take; None when not waiting."""
        try:
            rank = await self._redis.zrank(self._keys.waiting, session_id)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot reach the handoff queue: {exc}") from exc
        return None if rank is None else int(rank) + 1

    async def waiting(self) -> list[SessionInfo]:
        """Sessions waiting for a human, first come first, with their transcripts."""
        ids = await self._redis.zrange(self._keys.waiting, 0, -1)
        return [await self._sessions.info(i.decode(), with_turns=True) for i in ids]

    async def active(self) -> list[SessionInfo]:
        """Sessions an operator has taken, with their transcripts."""
        ids = sorted(i.decode() for i in await self._redis.smembers(self._keys.active))
        return [await self._sessions.info(i, with_turns=True) for i in ids]

    async def customer_typing(self, session_id: str, now: float) -> None:
        """The customer is writing to the operator who has the conversation: the desk shows it
        for `TYPING_S` or until the message comes. Nothing of it is kept."""
        await self._in_state(session_id, "human", "No person has the conversation to see it")
        try:
            await self._redis.set(self._keys.customer_typing(session_id), now, ex=TYPING_S)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot tell the operator: {exc}") from exc

    async def customers_typing(self, sessions: list[SessionInfo]) -> set[str]:
        """Those of `sessions` whose customer is typing now (since their last message)."""
        if not sessions:
            return set()
        keys = [self._keys.customer_typing(info.session_id) for info in sessions]
        try:
            marks = await self._redis.mget(keys)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read who is typing: {exc}") from exc
        typing = set()
        for info, mark in zip(sessions, marks, strict=True):
            wrote = max((t.ts for t in info.turns if t.role == "user"), default=0.0)
            if mark is not None and float(mark) > wrote:
                typing.add(info.session_id)
        return typing

    async def take(self, session_id: str, operator: str) -> SessionInfo:
        async with self._sessions.locked(session_id):
            info = await self._in_state(
                session_id, "pending_human", f"Session {session_id} is not waiting for a human"
            )
            now = time.time()
            await self._sessions.append(
                session_id,
                [state_turn("human", f"taken by {operator}", now)],
                meta={"state": "human", "state_since": now, "operator": operator},
            )
            await self._redis.zrem(self._keys.waiting, session_id)
            await self._redis.sadd(self._keys.active, session_id)
            await self.outbox.put(info, f"You are now talking to {operator}.", operator)
        if self._stats is not None:
            online = await self._redis.hget(self._keys.meta(session_id), "asked_online")
            await self._stats.taken(operator, now - (info.state_since or now), online == b"1")
        taken = await self._sessions.info(session_id, with_turns=True)
        for notifier in self._notifiers:
            notifier.changed(taken, f"taken by {operator}")
        return taken

    async def send(
        self,
        session_id: str,
        operator: str,
        text: str,
        attachment: str = "",
        file: str = "",
        via: str = "desk",
    ) -> OutboxMessage:
        """An operator's message to the customer: stored in the history and put on the outbox
        (`attachment`, `file`: see `OutboxMessage`); the notifiers hear where it came from
        (`via`: "desk", the operator API, or a notifier's own channel)."""
        if not text.strip():
            raise HandoffError("The message is empty.")
        async with self._sessions.locked(session_id):
            info = await self._in_state(
                session_id, "human", f"Take session {session_id} before writing to it"
            )
            turn = Turn(
                role="operator",
                text=text.strip(),
                ts=time.time(),
                operator=operator,
                file=file or None,
            )
            await self._sessions.append(session_id, [turn])
            sent = await self.outbox.put(
                info, turn.text, operator, attachment=attachment, file=file
            )
        for notifier in self._notifiers:
            notifier.answered(info, turn, via)
        return sent

    async def typing(self, session_id: str, operator: str) -> OutboxMessage:
        """`operator` is writing to the customer: the channel shows it for a few seconds
        ("Olga is typing…" in the web chat, "typing…" in Telegram). Not kept in the history."""
        info = await self._in_state(
            session_id, "human", f"Take session {session_id} before writing to it"
        )
        return await self.outbox.put(info, "", operator, typing=True)

    async def note(self, session_id: str, operator: str, text: str) -> SessionInfo:
        """An operator's note on the conversation, in any state, for colleagues (what was
        checked, what was promised): stored in its history, never shown to the customer or the
        model."""
        if not text.strip():
            raise HandoffError("The note is empty.")
        async with self._sessions.locked(session_id):
            await self._known(session_id)
            turn = Turn(role="note", text=text.strip(), ts=time.time(), operator=operator)
            await self._sessions.append(session_id, [turn])
        noted = await self._sessions.info(session_id, with_turns=True)
        for notifier in self._notifiers:
            notifier.noted(noted, turn)
        return noted

    async def release(self, session_id: str, operator: str) -> SessionInfo:
        """Hand the conversation back to the bot."""
        async with self._sessions.locked(session_id):
            info = await self._known(session_id)
            if info.state == "bot":
                raise HandoffError(f"Session {session_id} is already with the assistant.")
            await self.hand_back(
                info,
                f"handed back by {operator}",
                "You are back with the assistant. Ask me anything about our FAQ.",
                operator,
            )
        return await self._sessions.info(session_id, with_turns=True)

    async def pass_on(self, session_id: str, operator: str) -> SessionInfo:
        """The operator who has the conversation puts it back in line for a colleague, at its
        front (the customer has waited once already); the customer is told."""
        async with self._sessions.locked(session_id):
            info = await self._in_state(
                session_id, "human", f"Session {session_id} is not with an operator"
            )
            now = time.time()
            try:
                first = await self._redis.zrange(self._keys.waiting, 0, 0, withscores=True)
                await self._sessions.append(
                    session_id,
                    [state_turn("pending_human", f"passed on by {operator}", now)],
                    meta={"state": "pending_human", "state_since": now, "operator": ""},
                )
                front = min([now, *(since - 1 for _, since in first)])
                async with self._redis.pipeline(transaction=False) as pipe:
                    pipe.zadd(self._keys.waiting, {session_id: front})
                    pipe.srem(self._keys.active, session_id)
                    pipe.delete(self._keys.reminded(session_id))
                    await pipe.execute()
            except RedisError as exc:
                raise StorageUnavailable(f"Cannot put the conversation in line: {exc}") from exc
            await self.outbox.put(
                info,
                f"{operator} has passed your conversation to a colleague, who will answer here; "
                "you are next.",
                "",  # from the assistant
            )
        return await self._sessions.info(session_id, with_turns=True)

    async def hand_back(self, info: SessionInfo, note: str, told: str, operator: str) -> None:
        """Give the conversation back to the bot, telling the customer `told`; the caller holds
        the session's lock."""
        now = time.time()
        await self._sessions.append(
            info.session_id,
            [state_turn("bot", note, now)],
            meta={"state": "bot", "state_since": now, "operator": "", "fallbacks": 0},
        )
        await self._redis.zrem(self._keys.waiting, info.session_id)
        await self._redis.srem(self._keys.active, info.session_id)
        rating_id = await self._ratable(info, operator, now) if operator else ""
        await self.outbox.put(info, told, operator, rating_id)
        back = replace(info, state="bot", state_since=now, operator=None)
        for notifier in self._notifiers:
            notifier.changed(back, note)

    async def _ratable(self, info: SessionInfo, operator: str, now: float) -> str:
        """A record the customer can rate `operator`'s help by (bot.feedback), as a reply."""
        rating_id = uuid.uuid4().hex
        record = {"question": "", "reply": "", "mode": "operator", "operator": operator, "ts": now}
        key = self._keys.reply(info.session_id, rating_id)
        await self._sessions.keep(key, record, "the conversation's rating")
        return rating_id

    async def operator_silent_for(self, info: SessionInfo, now: float) -> float:
        """Seconds since the operator who has the conversation took it or last wrote in it."""
        last = info.state_since
        for turn in await self._sessions.history(info.session_id, last=50):
            if turn.role == "operator":
                last = max(last, turn.ts)
        return now - last

    async def _known(self, session_id: str) -> SessionInfo:
        info = await self._sessions.info(session_id)
        if not info.created:
            raise UnknownSession(f"No conversation with id {session_id}.")
        return info

    async def _in_state(self, session_id: str, state: State, problem: str) -> SessionInfo:
        """The session, which must be in `state`; else HandoffError: "`problem` (state: …)"."""
        info = await self._known(session_id)
        if info.state != state:
            raise HandoffError(f"{problem} (state: {info.state}).")
        return info


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"
