"""The conversation core every channel calls: one inbound message in, reply events out."""

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime, tzinfo
from typing import Protocol

from redis.exceptions import RedisError

from bot.erasure import Erased, erase_session
from bot.errors import ConversationError
from bot.feedback import FeedbackLog, reply_record
from bot.files import SessionFiles, told
from bot.follow_ups import FollowUps
from bot.grounded_reply import GroundedReplies
from bot.handoff import (
    HandoffDesk,
    HandoffError,
    HandoffNotifier,
    TeamStatus,
    Waiting,
    state_turn,
)
from bot.intents import Intent, intent
from bot.messages import Inbound, Mode, Reply, ReplyChunk, ReplyEvent, SessionInfo, Source, Turn
from bot.outbox import OutboxMessage
from bot.policy import EMAIL, AnswerPolicy
from bot.rate_limit import RateLimiter
from bot.saved_replies import SavedReplies
from bot.session_locks import SessionQueue
from bot.session_store import SessionStore
from bot.stats import ConversationStats
from bot.unanswered_topics import UnansweredTopics
from engine import ChatModel
from knowledge import Hit, KnowledgeError, Retriever

log = logging.getLogger(__name__)

NOT_TO_THE_ASSISTANT = (
    "Photos and files go to a person, and the assistant reads only text: ask for a person "
    'first ("Talk to a human").'
)


class Observer(Protocol):
    """Receives the core's measurements (adapters turn them into metrics)."""

    def retrieval(self, seconds: float) -> None: ...

    def reply(self, mode: str, seconds: float, chunks: int) -> None: ...

    def handoff(self) -> None: ...


class InvalidMessage(ConversationError):
    """The customer's message cannot be answered as sent (empty or too long)."""


class DuplicateMessage(ConversationError):
    """This channel message id was already processed; the redelivery is dropped."""


class ConversationManager:
    def __init__(
        self,
        sessions: SessionStore,
        retriever: Retriever,
        model: ChatModel,
        policy: AnswerPolicy | None = None,
        limiter: RateLimiter | None = None,
        observer: Observer | None = None,
        notifiers: Sequence[HandoffNotifier] = (),
        time_zone: tzinfo = UTC,
    ) -> None:
        """`time_zone`: where the days of the figures (`stats`) begin and end."""
        self._sessions = sessions
        self._retriever = retriever
        self._model = model
        self.model = model  # for callers that talk to the model directly (raw completions)
        self._limiter = limiter
        self._observer = observer
        self._notifiers = tuple(notifiers)
        self._queue = SessionQueue()
        self.policy = policy or AnswerPolicy()
        self.stats = ConversationStats(sessions, time_zone)
        self.handoff = HandoffDesk(sessions, self.stats, self._notifiers)
        self.files = SessionFiles(sessions)
        self.follow_ups = FollowUps(sessions)  # what the customer's pages showed
        self.saved_replies = SavedReplies(sessions)
        self.feedback = FeedbackLog(sessions, self.stats)
        self.unanswered_topics = UnansweredTopics(self.feedback, retriever)
        self._grounded = GroundedReplies(model, self.policy)

    async def handle(self, inbound: Inbound) -> AsyncIterator[ReplyEvent]:
        """Answer one message. Yields `ReplyChunk`s while a grounded reply is generated, then
        exactly one `Reply`, whose text is authoritative.

        Messages of one session are answered one at a time, in arrival order; a redelivered
        message id raises DuplicateMessage; too many messages raise RateLimited.
        """
        text = self._validate(inbound.text)
        if inbound.message_id and not await self._sessions.claim_delivery(
            inbound.channel, inbound.message_id, self.policy.dedupe_ttl_s
        ):
            raise DuplicateMessage(f"Message {inbound.message_id} was already received.")
        if self._limiter is not None:
            await self._limiter.take(f"{inbound.channel}:{inbound.user_id or inbound.session_id}")
        # A question's FAQ search does not depend on the conversation: it starts now, while the
        # message waits for the session's earlier messages to be answered.
        kind = intent(text)
        search = asyncio.create_task(self._retrieve(text)) if kind is None else None
        try:
            async with (
                self._queue.turn(inbound.session_id),
                self._sessions.locked(inbound.session_id),
            ):
                started, chunks = time.perf_counter(), 0
                reply: Reply | None = None
                async for event in self._turn(inbound, text, kind, search):
                    if isinstance(event, Reply):
                        reply = event
                    else:
                        chunks += 1
                        yield event
        finally:
            if search is not None:
                search.cancel()  # unused when a human has the conversation or the turn failed
        if reply is not None:
            if self._observer is not None:
                self._observer.reply(reply.mode, time.perf_counter() - started, chunks)
            await self._count(inbound.session_id, reply)
            yield reply

    async def _count(self, session_id: str, reply: Reply) -> None:
        """The message in the figures and the recent conversations, in one round trip. A failure
        is logged, not raised: the customer's answer does not depend on them."""
        # A reply that puts the customer in line is the only "handoff" reply with an id.
        handed_over = reply.mode == "handoff" and bool(reply.reply_id)
        try:
            async with self._sessions.redis.pipeline(transaction=False) as pipe:
                self.stats.count(pipe, session_id, reply, handed_over)
                self._sessions.seen(pipe, session_id, time.time())
                await pipe.execute()
        except RedisError as exc:
            log.warning("Could not count the message in the figures: %s", exc)

    async def recent(
        self, count: int, before: float | None = None, contains: str = ""
    ) -> list[tuple[SessionInfo, float]]:
        """Conversations, and when their customer wrote last (before `before`), latest first;
        with `contains`, those with every one of its words, or whose id begins with it."""
        if contains.strip():
            return await self._sessions.find(contains, count, before)
        return await self._sessions.recent(count, before)

    async def pass_on(self, session_id: str, operator: str) -> SessionInfo:
        """`operator` puts the conversation they have back in line, first, for a colleague;
        the team chat hears of it as of any customer who starts waiting."""
        info = await self.handoff.pass_on(session_id, operator)
        if self._notifiers:
            staffed = await self.handoff.presence.staffed()
            call = Waiting(session_id, info.channel, 1, f"passed on by {operator}", staffed)
            for notifier in self._notifiers:
                notifier.waiting(call)
        return info

    async def team(self) -> TeamStatus:
        """Whether the team is there for a customer who asks for a person now: when it is
        back if not (outside its hours), how long customers usually wait for it if so."""
        here, hours = await self.handoff.presence.staffed(), self.policy.hours
        back = "" if here or hours is None else hours.back(datetime.now(UTC))
        return TeamStatus(here, back, await self.stats.usual_wait() if here else None)

    async def ask(self, inbound: Inbound) -> Reply:
        """The final reply of `handle`, for channels that do not stream."""
        async for event in self.handle(inbound):
            if isinstance(event, Reply):
                return event
        raise ConversationError("The conversation core produced no reply.")  # pragma: no cover

    async def attach(self, said: Inbound, name: str, data: bytes) -> Reply:
        """A photo or file (`bot.files`) a customer sends to the person they wait for or talk
        to, with their message `said`: kept with the conversation, which tells it as a message
        of theirs (`said.text`, else "[image photo.jpg]"); the operators' channels are told as
        of any message of theirs. Refused (a message of theirs refused, too: rate limits, a
        redelivery), it is not kept."""
        session_id = said.session_id
        if (await self._sessions.info(session_id)).state == "bot":
            raise HandoffError(NOT_TO_THE_ASSISTANT)
        stored = await self.files.put(session_id, name, data)
        text = said.text or told(stored)
        kept = replace(said, text=text, attachment=said.attachment or stored.kind, file=stored.id)
        try:
            return await self.ask(kept)
        except BaseException:
            await self.files.drop(session_id, stored.id)
            raise

    async def send_file(
        self,
        session_id: str,
        operator: str,
        name: str,
        data: bytes,
        caption: str = "",
        via: str = "desk",
    ) -> OutboxMessage:
        """An operator's photo or file (`bot.files`) for the customer, kept with the
        conversation and told as a message of theirs ("[image label.png] `caption`"); each
        channel delivers it from there. Refused (the conversation is not theirs), it is not
        kept."""
        stored = await self.files.put(session_id, name, data)
        text = told(stored, caption)
        try:
            return await self.handoff.send(session_id, operator, text, file=stored.id, via=via)
        except BaseException:
            await self.files.drop(session_id, stored.id)
            raise

    async def resolve_unanswered(self, entry_id: str) -> list[str]:
        """Drop the queued unanswered questions FAQ entry `entry_id` now answers (after an
        operator made it from one of them, or added a phrasing to it); their ids."""
        _, answer_at = self.policy.thresholds(self._retriever.thresholds)
        return await self.feedback.resolve(entry_id, self._retriever, answer_at)

    async def history(self, session_id: str) -> list[Turn]:
        """The conversation as its customer may see it: without operators' notes."""
        return [t for t in await self._sessions.history(session_id) if t.role != "note"]

    async def session(self, session_id: str, with_turns: bool = True) -> SessionInfo:
        return await self._sessions.info(session_id, with_turns=with_turns)

    async def start_session(self, session_id: str, channel: str, site: str | None = None) -> None:
        """Create the session's record before its first message (binding it to a site)."""
        await self._sessions.append(session_id, [], channel=channel, meta={"site": site or ""})

    async def reset(self, session_id: str) -> None:
        await self._sessions.reset(session_id)

    async def erase(self, session_id: str) -> Erased:
        """Delete everything kept of the conversation (`bot.erasure`), once the messages of it
        that came before are answered."""
        async with self._queue.turn(session_id):
            erased = await erase_session(self._sessions, session_id)
        for notifier in self._notifiers:
            notifier.erased(session_id)
        return erased

    def _validate(self, raw: str) -> str:
        text = raw.strip()
        if not text:
            raise InvalidMessage("The message is empty; type a question.")
        if len(text) > self.policy.max_message_chars:
            raise InvalidMessage(
                f"The message is {len(text)} characters long; the limit is "
                f"{self.policy.max_message_chars}."
            )
        return text

    async def _turn(
        self,
        inbound: Inbound,
        text: str,
        kind: Intent | None,
        search: "asyncio.Task[list[Hit]] | None",
    ) -> AsyncIterator[ReplyEvent]:
        """One turn, inside the session's lock: decide, answer, store. `kind` is the message's
        intent, if it is not a question; `search` is the FAQ search for a question, started
        when it came."""
        sid, now, policy = inbound.session_id, time.time(), self.policy
        info = await self._sessions.info(sid)
        asked = Turn(role="user", text=text, ts=now, file=inbound.file or None)
        if kind == "reset":
            await self._sessions.reset(sid)
            if info.site:  # a widget's conversation stays bound to its site
                await self.start_session(sid, inbound.channel, info.site)
            yield Reply(sid, policy.smalltalk("reset"), "smalltalk")
            return

        if info.state == "human" and policy.operator_idle_s:
            silent = await self.handoff.operator_silent_for(info, now)
            if silent >= policy.operator_idle_s:
                await self.handoff.hand_back(
                    info,
                    f"{info.operator} silent for {silent / 60:.0f} min",
                    "Our colleague has left the conversation, so you are back with the "
                    "assistant. Ask me anything about our FAQ.",
                    "",  # from the assistant, not from the colleague
                )
                info = await self._sessions.info(sid)
        if inbound.file and info.state == "bot":  # handed back meanwhile
            raise HandoffError(NOT_TO_THE_ASSISTANT)
        if info.state != "bot":  # a human has (or will have) the conversation: stay quiet
            place = await self.handoff.place(sid) if info.state == "pending_human" else None
            quiet = "" if place is None else policy.still_waiting(place, text)
            # A web chat's customer may leave before the person answers: their address is
            # kept, to be written to (`bot.follow_ups`).
            address = EMAIL.search(text) if inbound.channel == "web" else None
            meta = {"email": address.group()} if address else {}
            await self._store(
                inbound, [asked], Reply(sid, quiet, "handoff", state=info.state), **meta
            )
            said = replace(inbound, text=text)
            for notifier in self._notifiers:
                notifier.wrote(info, said)
            yield Reply(sid, quiet, "handoff", state=info.state)
            return

        if kind == "human":
            yield await self._hand_over(inbound, asked, "customer asked for a human")
            return
        if kind is not None:
            reply = Reply(sid, policy.smalltalk(kind), "smalltalk", reply_id=_new_id())
            await self._store(inbound, [asked], reply, fallbacks=0)
            yield reply
            return

        hits = await (search or self._retrieve(text))
        confidence = hits[0].score if hits else 0.0
        sources = tuple(Source(h.entry.id, h.entry.question, h.score) for h in hits)
        known = self._retriever.thresholds
        faq_at, answer_at = policy.thresholds(known)
        mode: Mode
        suggested: tuple[Source, ...] = ()
        if hits and confidence >= faq_at and hits[0].entry.answer:
            mode, reply_text, sources = "faq", hits[0].entry.answer, sources[:1]
        elif hits and confidence >= answer_at:
            relevant = [h for h in hits if h.score >= answer_at]
            history = await self._sessions.history(sid, last=policy.history_turns)
            async for event in self._grounded.reply(
                text, relevant, history, sources[: len(relevant)]
            ):
                if isinstance(event, ReplyChunk):
                    yield event
                else:
                    mode, reply_text, sources = "grounded", event.text, event.sources
        else:
            # The entries closest to the question, none close enough to answer it, to pick from.
            near = [s for s in sources if s.score >= known.suggest]
            suggested = tuple(near[: policy.max_suggestions])
            mode, sources = "fallback", ()
            reply_text = policy.suggesting(suggested) if suggested else policy.fallback_message

        fallbacks = info.fallbacks + 1 if mode == "fallback" else 0
        if mode == "fallback":
            offered = tuple(s.id for s in suggested)
            await self.feedback.add("fallback", sid, text, reply_text, suggested=offered)
            if policy.handoff_after_fallbacks and fallbacks >= policy.handoff_after_fallbacks:
                yield await self._hand_over(
                    inbound, asked, f"{fallbacks} questions in a row the FAQ does not answer"
                )
                return
        reply = Reply(sid, reply_text, mode, sources, _new_id(), confidence, suggestions=suggested)
        await self._store(inbound, [asked], reply, fallbacks=fallbacks)
        yield reply

    async def _hand_over(self, inbound: Inbound, asked: Turn, reason: str) -> Reply:
        if self._observer is not None:
            self._observer.handoff()
        sid, now = inbound.session_id, time.time()
        place = await self.handoff.enqueue(sid, now)
        team = await self.team()
        reply = Reply(
            sid,
            self.policy.waiting(place, team.here, inbound.channel, team.back, team.usual_wait_s),
            "handoff",
            reply_id=_new_id(),
            state="pending_human",
        )
        await self._store(
            inbound,
            [asked, state_turn("pending_human", reason, now)],
            reply,
            state="pending_human",
            state_since=now,
            fallbacks=0,
            asked_online=int(team.here),  # their wait tells the next ones what to expect
        )
        call = Waiting(sid, inbound.channel, place, reason, team.here, team.back)
        for notifier in self._notifiers:
            notifier.waiting(call)
        return reply

    async def _store(
        self, inbound: Inbound, turns: list[Turn], reply: Reply, **meta: str | float
    ) -> None:
        """The turn's messages, the reply (if any) and the session's new metadata, atomically."""
        if reply.text:
            answered = Turn(
                "assistant",
                reply.text,
                time.time(),
                reply.mode,
                reply.sources,
                reply.reply_id,
                suggestions=reply.suggestions,
            )
            turns = [*turns, answered]
        record = reply_record(turns[0].text, reply) if reply.reply_id else None
        if inbound.page:
            meta = {**meta, "page": inbound.page}
        await self._sessions.append(
            inbound.session_id,
            turns,
            channel=inbound.channel,
            meta=meta,
            reply=(reply.reply_id, record) if record else None,
        )

    async def _retrieve(self, text: str) -> list[Hit]:
        started = time.perf_counter()
        try:
            return await self._retriever.search(text, k=self.policy.top_k)
        except KnowledgeError:
            log.exception("retrieval failed; answering with the fallback message")
            return []
        finally:
            if self._observer is not None:
                self._observer.retrieval(time.perf_counter() - started)


def _new_id() -> str:
    return uuid.uuid4().hex
