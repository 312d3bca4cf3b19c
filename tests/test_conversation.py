"""The conversation core under concurrency, redelivery, limits, expiry, handoff and Redis outages.

Real Redis and real retrieval. The model is scripted here (these test the manager's ordering and
decisions, not the model); the real model answers in test_server.py and test_operator_api.py.
"""

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from redis.asyncio import Redis

from adapters.redis_server import RedisServer, connect
from bot import (
    AnswerPolicy,
    ConversationManager,
    DuplicateMessage,
    HandoffError,
    HandoffNotifier,
    Inbound,
    RateLimited,
    RateLimiter,
    SessionInfo,
    SessionKeys,
    SessionStore,
    StorageUnavailable,
    TeamHours,
    TeamStatus,
    Turn,
    Waiting,
)
from engine import ChatMessage, GenerationParams
from knowledge import Embedder, FaqEntry, KnowledgeKeys, KnowledgeStore, Retriever

FAQ_QUESTION = "how do I reset my password?"
GROUNDED_QUESTION = "can I pay later"  # scores between the thresholds: the model answers
OUT_OF_SCOPE = ["what is the capital of France?", "write me a poem", "how do I cook pasta"]
# close to the FAQ's return entries, not close enough to answer from: suggestions
NEAR_MISS = "i need to send back a jacket that is too small"


class SlowScriptedModel:
    """Answers with the FAQ's own words, a chunk every few milliseconds."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        self.calls += 1
        for word in [
            "We",
            "accept",
            "Visa,",
            "Mastercard,",
            "American",
            "Express",
            "and",
            "PayPal.",
        ]:
            await asyncio.sleep(0.002)
            yield word + " "

    async def close(self) -> None:
        return None


def build(
    redis: Redis,
    prefix: str,
    retriever: Retriever,
    model: SlowScriptedModel | None = None,
    ttl_s: int = 3600,
    notifier: HandoffNotifier | None = None,
    **policy: object,
) -> ConversationManager:
    sessions = SessionStore(redis, SessionKeys(prefix), ttl_s=ttl_s)
    return ConversationManager(
        sessions,
        retriever,
        model or SlowScriptedModel(),
        AnswerPolicy(business="Pinecone", **policy),  # type: ignore[arg-type]
        notifiers=[notifier] if notifier is not None else [],
    )


async def test_50_concurrent_messages_in_one_session_are_answered_in_arrival_order(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    model = SlowScriptedModel()
    bot = build(redis_client, prefix, sample_retriever, model)
    questions = [
        f"{GROUNDED_QUESTION} (#{i})" if i % 2 else f"{FAQ_QUESTION} (#{i})" for i in range(50)
    ]
    replies = await asyncio.gather(*(bot.ask(Inbound("busy", q)) for q in questions))
    assert model.calls == 25
    assert {r.mode for r in replies} == {"faq", "grounded"}
    turns = await bot.history("busy")
    assert [t.role for t in turns] == ["user", "assistant"] * 50
    assert [t.text for t in turns[0::2]] == questions  # each stored once, in arrival order
    assert [t.reply_id for t in turns[1::2]] == [r.reply_id for r in replies]


class HeldModel(SlowScriptedModel):
    """Writes its reply only once `go` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.writing, self.go = asyncio.Event(), asyncio.Event()

    async def stream(
        self, messages: Sequence[ChatMessage], params: GenerationParams
    ) -> AsyncIterator[str]:
        self.writing.set()
        await self.go.wait()
        async for chunk in super().stream(messages, params):
            yield chunk


async def test_a_question_behind_a_reply_being_written_is_searched_meanwhile(
    redis_client: Redis, prefix: str, sample_retriever: Retriever, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A customer who asks again while the model writes their previous answer gets the FAQ
    answer as soon as that reply is done: the FAQ search does not wait its turn."""
    searched: list[str] = []
    second_searched = asyncio.Event()
    search = sample_retriever.search

    async def recorded(query: str, k: int = 3) -> list:
        hits = await search(query, k)
        searched.append(query)
        if query == FAQ_QUESTION:
            second_searched.set()
        return hits

    monkeypatch.setattr(sample_retriever, "search", recorded)
    model = HeldModel()
    bot = build(redis_client, prefix, sample_retriever, model)
    first = asyncio.create_task(bot.ask(Inbound("typist", GROUNDED_QUESTION)))
    await model.writing.wait()
    second = asyncio.create_task(bot.ask(Inbound("typist", FAQ_QUESTION)))
    # Without the early search this waits forever: the first reply is on hold.
    await asyncio.wait_for(second_searched.wait(), timeout=60)
    assert searched == [GROUNDED_QUESTION, FAQ_QUESTION]  # while the first reply is on hold
    assert not first.done() and not second.done()  # answers still come in order
    model.go.set()
    replies = await asyncio.gather(first, second)
    assert [r.mode for r in replies] == ["grounded", "faq"]
    turns = await bot.history("typist")
    assert [t.text for t in turns[0::2]] == [GROUNDED_QUESTION, FAQ_QUESTION]


async def test_200_concurrent_sessions_never_cross_talk(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever)
    sessions = [f"s{i}" for i in range(200)]

    async def talk(sid: str) -> None:
        await bot.ask(Inbound(sid, f"{FAQ_QUESTION} asked by {sid}"))
        await bot.ask(Inbound(sid, f"{GROUNDED_QUESTION} asked by {sid}"))

    await asyncio.gather(*(talk(s) for s in sessions))
    for sid in sessions:
        user_texts = [t.text for t in await bot.history(sid) if t.role == "user"]
        assert user_texts == [
            f"{FAQ_QUESTION} asked by {sid}",
            f"{GROUNDED_QUESTION} asked by {sid}",
        ]


async def test_a_message_delivered_5_times_at_once_is_answered_once(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever)
    inbound = Inbound("dup", FAQ_QUESTION, channel="telegram", message_id="update-42")
    results = await asyncio.gather(*(bot.ask(inbound) for _ in range(5)), return_exceptions=True)
    replies = [r for r in results if not isinstance(r, BaseException)]
    assert len(replies) == 1 and replies[0].mode == "faq"
    assert all(isinstance(r, DuplicateMessage) for r in results if r not in replies)
    assert [t.role for t in await bot.history("dup")] == ["user", "assistant"]


async def test_sessions_expire_after_their_ttl(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever, ttl_s=1)
    await bot.ask(Inbound("short", FAQ_QUESTION))
    assert len(await bot.history("short")) == 2
    await asyncio.sleep(2.2)
    assert await bot.history("short") == []
    assert (await bot.session("short")).created == 0


async def test_reset_forgets_the_conversation_and_the_handoff(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever)
    await bot.ask(Inbound("r", FAQ_QUESTION))
    await bot.ask(Inbound("r", "I want to talk to a human"))
    assert (await bot.session("r")).state == "pending_human"
    reply = await bot.ask(Inbound("r", "/reset"))
    assert reply.mode == "smalltalk" and "forgotten" in reply.text
    assert await bot.history("r") == []
    assert (await bot.session("r")).state == "bot"
    assert await bot.handoff.waiting() == []
    assert (await bot.ask(Inbound("r", FAQ_QUESTION))).mode == "faq"


async def test_the_rate_limit_triggers_politely_and_recovers(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever)
    bot._limiter = RateLimiter(redis_client, "3 per 2 seconds", f"{prefix}:ratelimit")
    for _ in range(3):
        await bot.ask(Inbound("fast", FAQ_QUESTION, user_id="u1"))
    with pytest.raises(RateLimited, match="try again in") as limited:
        await bot.ask(Inbound("fast", FAQ_QUESTION, user_id="u1"))
    assert 1 <= limited.value.retry_after_s <= 2
    # Another customer is not affected; the limited one is refused without a stored turn.
    assert (await bot.ask(Inbound("other", FAQ_QUESTION, user_id="u2"))).mode == "faq"
    assert len(await bot.history("fast")) == 6
    await asyncio.sleep(limited.value.retry_after_s + 0.2)
    assert (await bot.ask(Inbound("fast", FAQ_QUESTION, user_id="u1"))).mode == "faq"


async def test_greetings_and_thanks_get_short_replies_without_the_model(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    model = SlowScriptedModel()
    bot = build(redis_client, prefix, sample_retriever, model)
    hello = await bot.ask(Inbound("st", "Hello!"))
    opening = await bot.ask(Inbound("st", "hi, I have a question"))
    thanks = await bot.ask(Inbound("st", "thanks a lot"))
    assert (hello.mode, opening.mode, thanks.mode) == ("smalltalk", "smalltalk", "smalltalk")
    assert "Pinecone assistant" in hello.text and opening.text == hello.text
    assert "welcome" in thanks.text
    assert model.calls == 0
    assert await bot.feedback.unanswered() == []


async def test_repeated_unanswerable_questions_call_a_human(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever, handoff_after_fallbacks=3)
    first, second, third = [await bot.ask(Inbound("lost", q)) for q in OUT_OF_SCOPE]
    assert (first.mode, second.mode) == ("fallback", "fallback")
    assert third.mode == "handoff" and third.state == "pending_human"
    assert "you are next" in third.text
    waiting = await bot.handoff.waiting()
    assert [s.session_id for s in waiting] == ["lost"]
    assert "3 questions in a row" in waiting[0].turns[-2].text  # the timestamped state change
    assert [i.question for i in await bot.feedback.unanswered()] == OUT_OF_SCOPE


async def test_a_customer_saying_thanks_and_goodbye_is_not_an_unanswered_question(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """Closing words are answered politely, without the model, never with "I don't know", and
    neither count towards the hand-off nor reach the operators' unanswered list."""
    model = SlowScriptedModel()
    bot = build(redis_client, prefix, sample_retriever, model, handoff_after_fallbacks=3)
    replies = [
        await bot.ask(Inbound("closing", q))
        for q in [*OUT_OF_SCOPE[:2], "ok thank you so much, that helped!", "thanks, bye"]
    ]
    assert [r.mode for r in replies] == ["fallback", "fallback", "smalltalk", "smalltalk"]
    assert "welcome" in replies[2].text and replies[3].text.startswith("Goodbye")
    assert (await bot.ask(Inbound("closing", OUT_OF_SCOPE[2]))).mode == "fallback"  # not handoff
    assert [i.question for i in await bot.feedback.unanswered()] == OUT_OF_SCOPE
    assert model.calls == 0


async def test_a_near_miss_is_offered_the_closest_questions_and_off_topic_gets_none(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """A question close to FAQ entries but not close enough to answer from gets them as "did you
    mean" suggestions (mode fallback: operators still see it unanswered); asking one gets its
    answer verbatim. An off-topic question gets the plain apology."""
    model = SlowScriptedModel()
    bot = build(redis_client, prefix, sample_retriever, model, handoff_after_fallbacks=0)
    near = await bot.ask(Inbound("near", NEAR_MISS))
    assert near.mode == "fallback" and near.sources == ()
    assert near.suggestions and near.suggestions[0].id == "returns-how"
    thresholds = sample_retriever.thresholds
    assert all(thresholds.suggest <= s.score < thresholds.answer for s in near.suggestions)
    assert near.text.startswith("I'm not sure I understood. Did you mean:")
    assert "- How do I return an item?" in near.text.splitlines()
    picked = await bot.ask(Inbound("near", near.suggestions[0].question))
    assert picked.mode == "faq" and picked.text.startswith('Go to "My account" > "Orders"')
    assert [i.question for i in await bot.feedback.unanswered()] == [NEAR_MISS]

    for question in OUT_OF_SCOPE:
        off = await bot.ask(Inbound("off", question))
        assert off.mode == "fallback" and off.suggestions == ()
        assert off.text == AnswerPolicy().fallback_message
    assert model.calls == 0


class TeamChat:
    """A `HandoffNotifier` that keeps what it was told."""

    def __init__(self) -> None:
        self.told: list[Waiting] = []
        self.heard: list[tuple[str, str, str, str | None]] = []  # session, text, state, operator
        self.changes: list[tuple[str, str, str | None, str]] = []  # session, state, operator, note

    def waiting(self, call: Waiting) -> None:
        self.told.append(call)

    def wrote(self, info: SessionInfo, said: Inbound) -> None:
        self.heard.append((info.session_id, said.text, info.state, info.operator))

    def changed(self, info: SessionInfo, note: str) -> None:
        self.changes.append((info.session_id, info.state, info.operator, note))

    def noted(self, info: SessionInfo, note: Turn) -> None:
        self.changes.append((info.session_id, info.state, note.operator, f"note: {note.text}"))

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        self.changes.append((info.session_id, info.state, said.operator, f"{via}: {said.text}"))

    def erased(self, session_id: str) -> None:
        """Nothing: it keeps what it was told for the tests' assertions only."""


async def test_a_customer_is_told_when_no_operator_is_there(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """Nobody has the operator desk open (nobody listed the queue lately): the customer is put
    in line and told the answer may take a while, and in the web chat, which they may have left
    by then, asked for an e-mail address, and thanked for one; what they write meanwhile gets a
    short reply. Once an operator lists the queue, the next customer is told only their place."""
    team = TeamChat()
    bot = build(redis_client, prefix, sample_retriever, notifier=team)
    offline = "No one from our team is online right now, so this may take a while."
    ask_mail = "Leave your e-mail address here if you would like them to write to you."
    nobody = await bot.ask(Inbound("night", "talk to a human please"))
    assert nobody.mode == "handoff" and nobody.state == "pending_human"
    assert nobody.text == (
        f"I've asked a colleague to take over; you are next. They will answer here. {offline} "
        f"{ask_mail}"
    )
    hello = await bot.ask(Inbound("night", "hello?"))
    assert hello.text == "Our colleague will see this when they take over; you are next."
    thanked = await bot.ask(Inbound("night", "sure, it's ann.lee+shop@example.co.uk."))
    assert thanked.text == (
        "Thank you: if you are no longer here when they answer, they will write to "
        "ann.lee+shop@example.co.uk. You are next."
    )
    in_telegram = await bot.ask(Inbound("night-tg", "human please", channel="telegram"))
    assert in_telegram.text.endswith(offline)  # Telegram reaches them whenever it comes
    await bot.handoff.presence.watched()  # an operator opens the desk
    there = await bot.ask(Inbound("day", "Can I speak to a real person?"))
    assert there.text == "I've asked a colleague to take over; you are number 3 in line. They " + (
        "will answer here."
    )
    # The operators are told once per customer put in line, not again while they wait.
    assert team.told == [
        Waiting("night", "web", 1, "customer asked for a human", staffed=False),
        Waiting("night-tg", "telegram", 2, "customer asked for a human", staffed=False),
        Waiting("day", "web", 3, "customer asked for a human", staffed=True),
    ]


async def test_a_customer_outside_the_teams_hours_is_told_when_it_is_back(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """The team works set hours and nobody has the desk open: a customer put in line outside
    them is told when the team is back (not just "a while"), and the operators are told what the
    customer was told. An operator at the desk after hours answers as on any other day."""
    now = datetime.now(UTC)
    opens = (now + timedelta(hours=6)).replace(minute=0, second=0, microsecond=0)
    hours = TeamHours(f"Mo-Su {opens:%H}:00-{opens:%H}:30", ZoneInfo("UTC"))
    team = TeamChat()
    bot = build(redis_client, prefix, sample_retriever, notifier=team, hours=hours)
    day = "today" if opens.date() == now.date() else "tomorrow"
    back = f"{day} at {opens:%H}:00 (UTC)"
    assert await bot.team() == TeamStatus(here=False, back=back)  # as the widget says it
    asked = await bot.ask(Inbound("late", "can I talk to a person?"))
    assert asked.text == (
        "I've asked a colleague to take over; you are next. They will answer here. Our team is "
        f"away right now and back {back}. Leave your e-mail address here if you would like them "
        "to write to you."
    )
    in_telegram = await bot.ask(Inbound("late-tg", "human please", channel="telegram"))
    assert in_telegram.text.endswith(f"Our team is away right now and back {back}.")
    await bot.handoff.presence.watched()  # someone works late
    assert await bot.team() == TeamStatus(here=True)
    there = await bot.ask(Inbound("later", "human please"))
    assert there.text.endswith("you are number 3 in line. They will answer here.")
    assert [call.back for call in team.told] == [back, back, ""]


async def test_an_operator_who_says_they_are_here_counts_until_away_or_the_end_of_it(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """`/here` in the Telegram team chat (`on_duty`): present with no desk open, until `/away`
    (`off_duty`) or the end of the time it lasts."""
    bot = build(redis_client, prefix, sample_retriever)
    presence = bot.handoff.presence
    await presence.on_duty("Olga P.", for_s=1.0)
    await presence.on_duty("Ivan")
    assert await bot.team() == TeamStatus(here=True)
    assert await presence.present() == ["Ivan", "Olga P."]
    assert await presence.off_duty("Ivan") and not await presence.off_duty("Ivan")
    assert await presence.present() == ["Olga P."]
    await asyncio.sleep(1.2)  # Olga's time is over: nobody is there
    assert await bot.team() == TeamStatus(here=False)
    assert await presence.present() == []
    asked = await bot.ask(Inbound("alone", "can I talk to a person?"))
    assert asked.text.endswith(
        "this may take a while. Leave your e-mail address here if you "
        "would like them to write to you."
    )


async def test_an_operator_passes_a_conversation_to_a_colleague(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """An operator who must leave puts the conversation back in line, first (the customer has
    waited once): the customer is told, the team chat hears of it, and the next colleague takes
    it. Only a conversation with an operator can be passed on."""
    team = TeamChat()
    bot = build(redis_client, prefix, sample_retriever, notifier=team)
    await bot.ask(Inbound("first", "talk to a human please"))
    await bot.handoff.take("first", "olga")
    await bot.ask(Inbound("second", "human please"))
    await bot.handoff.note("first", "olga", "Order 4471 is lost; offered a refund")
    passed = await bot.pass_on("first", "olga")
    assert (passed.state, passed.operator) == ("pending_human", None)
    assert await bot.handoff.place("first") == 1 and await bot.handoff.place("second") == 2
    assert [m.text for m in await bot.handoff.outbox.read("web")][-1] == (
        "olga has passed your conversation to a colleague, who will answer here; you are next."
    )
    assert team.told[-1] == Waiting("first", "web", 1, "passed on by olga", staffed=False)
    meanwhile = await bot.ask(Inbound("first", "ok, thanks"))
    assert meanwhile.text == "Our colleague will see this when they take over; you are next."
    taken = await bot.handoff.take("first", "ivan")
    assert (taken.state, taken.operator) == ("human", "ivan")
    await bot.ask(Inbound("first", "my order is 4471"))
    await bot.handoff.send("first", "ivan", "The refund is on its way.")  # from the desk
    # The team chat hears what the customer writes while waiting and while with a person.
    assert team.heard == [
        ("first", "ok, thanks", "pending_human", None),
        ("first", "my order is 4471", "human", "ivan"),
    ]
    await bot.handoff.release("first", "ivan")
    # ... and who takes a conversation, an operator's notes and messages, and when it goes
    # back to the assistant.
    assert team.changes == [
        ("first", "human", "olga", "taken by olga"),
        ("first", "human", "olga", "note: Order 4471 is lost; offered a refund"),
        ("first", "human", "ivan", "taken by ivan"),
        ("first", "human", "ivan", "desk: The refund is on its way."),
        ("first", "bot", None, "handed back by ivan"),
    ]
    with pytest.raises(HandoffError, match="is not with an operator"):
        await bot.pass_on("second", "ivan")


async def test_a_customer_is_told_how_long_customers_usually_wait(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """With the team there, a customer put in line is told how long the customers who asked
    while it was there waited for it (the last 7 days, once 3 did); a customer who asked at
    night and waited till morning does not count."""
    keys = SessionKeys(prefix)
    bot = build(redis_client, prefix, sample_retriever)
    await bot.handoff.presence.watched()
    first = await bot.ask(Inbound("w-first", "human please"))
    assert first.text.endswith("They will answer here.")  # nothing to go by yet

    async def taken_after(session: str, seconds: float) -> None:
        await bot.ask(Inbound(session, "human please"))
        await redis_client.hset(keys.meta(session), "state_since", time.time() - seconds)
        await bot.handoff.take(session, "olga")

    for n, seconds in enumerate((120, 240, 360)):
        await taken_after(f"w-{n}", seconds)
    await redis_client.delete(keys.watched)  # night: nobody at the desk
    await taken_after("w-night", 10 * 3600)

    later = build(redis_client, prefix, sample_retriever)  # (the usual wait is read each minute)
    await later.handoff.presence.watched()
    told = await later.ask(Inbound("w-next", "human please"))
    assert told.text == (
        "I've asked a colleague to take over; you are number 2 in line. They will answer here. "
        "It usually takes about 4 minutes."
    )
    figures = (await later.stats.report(1)).total
    assert (figures.taken, figures.taken_online) == (4, 3)


async def test_a_conversation_its_operator_left_comes_back_to_the_assistant(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    """An operator took the conversation and stopped writing (forgot to hand it back): the bot
    stays quiet until the idle time has passed; then the customer's next message is answered by
    the assistant, and the customer is told the colleague left."""
    bot = build(redis_client, prefix, sample_retriever, operator_idle_s=1.0)
    await bot.ask(Inbound("idle", "talk to a human please"))
    await bot.handoff.take("idle", "olga")
    await bot.handoff.send("idle", "olga", "Hi, Olga here.")
    quiet = await bot.ask(Inbound("idle", FAQ_QUESTION))
    assert (quiet.mode, quiet.text, quiet.state) == ("handoff", "", "human")
    await asyncio.sleep(1.2)
    back = await bot.ask(Inbound("idle", FAQ_QUESTION))
    assert (back.mode, back.state) == ("faq", "bot")
    assert [m.text for m in await bot.handoff.outbox.read("web")][-1] == (
        "Our colleague has left the conversation, so you are back with the assistant. Ask me "
        "anything about our FAQ."
    )
    info = await bot.session("idle")
    assert info.state == "bot" and not await bot.handoff.active()
    [note] = [t.text for t in info.turns if t.role == "system" and "silent" in t.text]
    assert note == "state: bot (olga silent for 0 min)"


async def test_handoff_through_the_manager(
    redis_client: Redis, prefix: str, sample_retriever: Retriever
) -> None:
    bot = build(redis_client, prefix, sample_retriever)
    await bot.ask(Inbound("a", "talk to a human please"))
    asked = await bot.ask(Inbound("b", "Can I speak to a real person?"))
    assert asked.mode == "handoff" and "number 2 in line" in asked.text
    again = await bot.ask(Inbound("b", "hello? anyone there?"))
    assert again.mode == "handoff" and "number 2 in line" in again.text

    await bot.handoff.take("a", "alice")
    assert "you are next" in (await bot.ask(Inbound("b", "still waiting"))).text
    quiet = await bot.ask(Inbound("a", "my parcel is lost"))
    assert quiet.mode == "handoff" and quiet.text == "" and quiet.state == "human"
    sent = await bot.handoff.send("a", "alice", "Let me check that for you.")
    outbox = await bot.handoff.outbox.read("web")
    assert [m.text for m in outbox][-2:] == ["You are now talking to alice.", sent.text]
    await bot.handoff.release("a", "alice")
    assert (await bot.ask(Inbound("a", FAQ_QUESTION))).mode == "faq"
    roles = [t.role for t in await bot.history("a")]
    assert roles == [
        "user", "system", "assistant",  # asked for a human
        "system",  # taken by alice
        "user",  # the bot stayed quiet
        "operator",
        "system",  # handed back
        "user", "assistant",
    ]  # fmt: skip


async def test_a_thumbs_down_reply_becomes_an_faq_entry_that_answers_it(
    redis_client: Redis, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    knowledge = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    await knowledge.replace(sample_entries)
    bot = build(redis_client, prefix, Retriever(knowledge, embedder))
    question = "Do you offer student discounts?"
    disliked = await bot.ask(Inbound("fb", question))
    assert disliked.mode != "faq"
    await bot.feedback.rate("fb", disliked.reply_id, "down")
    [item] = [i for i in await bot.feedback.unanswered() if i.reason == "thumbs_down"]
    assert (item.question, item.reply, item.session_id) == (question, disliked.text, "fb")
    entry = await bot.feedback.answer(item.id, "Yes: 10% off with a valid student ID.", knowledge)
    assert entry.question == question
    assert item.id not in [i.id for i in await bot.feedback.unanswered()]
    again = await bot.ask(Inbound("fb2", question))
    assert again.mode == "faq" and again.text == "Yes: 10% off with a valid student ID."


async def test_redis_stopped_mid_conversation_loses_nothing(
    tmp_path: Path, embedder: Embedder, sample_entries: list[FaqEntry]
) -> None:
    server = RedisServer(tmp_path / "redis").start()
    redis = connect(server.url)
    try:
        knowledge = KnowledgeStore(redis, KnowledgeKeys("outage"))
        await knowledge.replace(sample_entries)
        bot = build(redis, "outage", Retriever(knowledge, embedder))
        first = await bot.ask(Inbound("o", FAQ_QUESTION))
        server.stop()
        with pytest.raises(StorageUnavailable, match="Cannot reach the session store"):
            await bot.ask(Inbound("o", "What are your opening hours?"))
        server.start()  # same folder, append-only file on
        started = time.monotonic()
        second = await bot.ask(Inbound("o", "What are your opening hours?"))
        assert time.monotonic() - started < 5
        texts = [t.text for t in await bot.history("o")]
        assert texts == [FAQ_QUESTION, first.text, "What are your opening hours?", second.text]
    finally:
        await redis.aclose()
        server.stop()
