import asyncio
import time

import pytest
from redis.asyncio import Redis

from bot import (
    MAX_FILE_BYTES,
    BadFile,
    BadSavedReply,
    FeedbackLog,
    HandoffDesk,
    SavedReplies,
    SessionFiles,
    SessionKeys,
    SessionStore,
    Source,
    Turn,
)
from bot.erasure import erase_session
from tests.pictures import png


async def test_history_round_trips_in_order_with_sources(redis_client: Redis, prefix: str) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix))
    asked = Turn("user", "how do I reset my password?", 1.0)
    answered = Turn("assistant", "Click Sign in.", 2.0, "faq", (Source("reset", "Reset?", 0.9),))
    await store.append("s1", [asked, answered])
    await store.append("s1", [Turn("user", "thanks", 3.0)])
    assert await store.history("s1") == [asked, answered, Turn("user", "thanks", 3.0)]
    assert await store.history("s1", last=1) == [Turn("user", "thanks", 3.0)]
    assert await store.history("someone-else") == []


async def test_history_is_capped_and_expires(redis_client: Redis, prefix: str) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix), ttl_s=60, max_turns=4)
    for i in range(5):
        await store.append("s", [Turn("user", f"q{i}", i), Turn("assistant", f"a{i}", i)])
    assert [t.text for t in await store.history("s")] == ["q3", "a3", "q4", "a4"]
    assert 0 < await redis_client.ttl(SessionKeys(prefix).history("s")) <= 60


async def test_the_session_lock_serialises_turns(redis_client: Redis, prefix: str) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix))
    inside = 0
    overlaps = 0

    async def turn(i: int) -> None:
        nonlocal inside, overlaps
        async with store.locked("s"):
            inside += 1
            overlaps += inside > 1
            await asyncio.sleep(0.01)
            await store.append("s", [Turn("user", f"q{i}", i), Turn("assistant", f"a{i}", i)])
            inside -= 1

    await asyncio.gather(*(turn(i) for i in range(10)))
    assert overlaps == 0
    texts = [t.text for t in await store.history("s")]
    assert len(texts) == 20
    assert all(texts[k][1:] == texts[k + 1][1:] for k in range(0, 20, 2))  # pairs never split


async def test_a_turn_longer_than_the_lease_keeps_its_session_locked(
    redis_client: Redis, prefix: str
) -> None:
    """Two workers (two stores on one Redis): a turn that runs for several leases keeps the lock,
    and the other worker's turn waits for it to end."""
    one, other = (SessionStore(redis_client, SessionKeys(prefix), lock_lease_s=0.3) for _ in "ab")
    order: list[str] = []

    async def long_turn() -> None:
        async with one.locked("s"):
            order.append("long starts")
            await asyncio.sleep(1.5)  # five leases
            order.append("long ends")

    async def next_turn() -> None:
        await asyncio.sleep(0.1)
        async with other.locked("s"):
            order.append("next")

    await asyncio.gather(long_turn(), next_turn())
    assert order == ["long starts", "long ends", "next"]
    assert await redis_client.exists(SessionKeys(prefix).lock("s")) == 0  # released


async def test_a_lock_left_by_a_dead_worker_frees_within_the_lease(
    redis_client: Redis, prefix: str
) -> None:
    """A worker killed mid-turn leaves its lock with the lease it last renewed; the session's next
    turn on another worker waits that out, not the turn's whole wait limit."""
    key = SessionKeys(prefix).lock("s")
    await redis_client.set(key, "dead-worker-token", px=1000)  # what a killed worker leaves
    store = SessionStore(redis_client, SessionKeys(prefix), lock_lease_s=1.0, lock_wait_s=30)
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with store.locked("s"):
        waited = loop.time() - started
    assert 0.5 < waited < 2.0


async def test_queued_questions_and_operator_messages_live_no_longer_than_sessions(
    redis_client: Redis, prefix: str
) -> None:
    """The unanswered queue and the outboxes outlive sessions unless trimmed: entries older than
    a session lives go when the next one is written (and, for the queue, when it is listed)."""
    store = SessionStore(redis_client, SessionKeys(prefix), ttl_s=2)
    feedback, desk = FeedbackLog(store), HandoffDesk(store)

    async def talk(session: str) -> None:
        asked = [Turn("user", "human please", time.time())]
        await store.append(session, asked, channel="web", meta={"state": "pending_human"})
        await desk.enqueue(session, time.time())
        await desk.take(session, "alice")  # "You are now talking to alice." goes to the outbox
        await desk.send(session, "alice", f"hello {session}")
        await feedback.add("fallback", session, f"question of {session}", "sorry")

    await talk("old")
    await asyncio.sleep(2.5)  # "old" is older than a session lives now
    assert [i.question for i in await feedback.unanswered()] == []  # listing drops it
    await feedback.add("fallback", "old", "question of old", "sorry")  # a fresh one stays
    await talk("new")
    assert [i.question for i in await feedback.unanswered()] == [
        "question of old",
        "question of new",
    ]
    outbox = [m.text for m in await desk.outbox.read("web")]
    assert outbox == ["You are now talking to alice.", "hello new"]


async def telegram_customer_with(
    store: SessionStore, session: str, operator: str, said: str
) -> HandoffDesk:
    """A Telegram customer whom `operator` took and wrote `said` to: two messages in the
    Telegram outbox ("You are now talking to …", then `said`)."""
    desk = HandoffDesk(store)
    pending = {"state": "pending_human"}
    await store.append(session, [Turn("user", "human", 1.0)], channel="telegram", meta=pending)
    await desk.enqueue(session, time.time())
    await desk.take(session, operator)
    await desk.send(session, operator, said)
    return desk


async def test_an_outbox_message_knows_when_it_was_written(
    redis_client: Redis, prefix: str
) -> None:
    """A sign of typing delivered late (a stopped worker left it) is not shown: the channel
    tells by when it was written."""
    store = SessionStore(redis_client, SessionKeys(prefix))
    desk = await telegram_customer_with(store, "c0", "alice", "one moment")
    before = time.time()
    sign = await desk.typing("c0", "alice")
    (read,) = [m for m in await desk.outbox.read("telegram") if m.typing]
    assert read.id == sign.id and before - 1 <= read.written_at <= time.time() + 1


async def test_a_channel_worker_gets_again_what_it_did_not_confirm(
    redis_client: Redis, prefix: str
) -> None:
    """A worker that failed between taking operator messages and confirming them (Redis went
    away) asks for its unconfirmed ones and gets them again; confirmed ones never come back."""
    store = SessionStore(redis_client, SessionKeys(prefix))
    desk = await telegram_customer_with(store, "c1", "alice", "one moment")
    taken = await desk.outbox.deliveries("telegram", "worker-1", block_ms=10)
    assert [m.text for m in taken] == ["You are now talking to alice.", "one moment"]
    assert await desk.outbox.deliveries("telegram", "worker-1", block_ms=10) == []  # new ones only
    await desk.outbox.delivered("telegram", taken[0].id)  # then the worker lost Redis
    again = await desk.outbox.deliveries("telegram", "worker-1", unconfirmed=True)
    assert again == taken[1:]
    await desk.outbox.delivered("telegram", again[0].id)
    assert await desk.outbox.deliveries("telegram", "worker-1", unconfirmed=True) == []


async def test_what_a_stopped_worker_left_unconfirmed_goes_out_through_another(
    redis_client: Redis, prefix: str
) -> None:
    """A worker restarted (or crashed) after taking operator messages and before confirming
    them: another claims those left unconfirmed long enough, and delivers them once."""
    store = SessionStore(redis_client, SessionKeys(prefix))
    desk = await telegram_customer_with(store, "c2", "bob", "your refund is on its way")
    taken = await desk.outbox.deliveries("telegram", "stopped-worker", block_ms=10)
    assert len(taken) == 2  # then it stopped
    assert await desk.outbox.abandoned("telegram", "new-worker", idle_ms=60_000) == []  # busy?
    await asyncio.sleep(0.2)
    claimed = await desk.outbox.abandoned("telegram", "new-worker", idle_ms=100)
    assert claimed == taken
    for message in claimed:
        await desk.outbox.delivered("telegram", message.id)
    assert await desk.outbox.abandoned("telegram", "other-worker", idle_ms=0) == []
    assert await desk.outbox.deliveries("telegram", "other-worker", block_ms=10) == []
    # One whose conversation was erased meanwhile is not delivered.
    await desk.send("c2", "bob", "and a voucher")
    assert len(await desk.outbox.deliveries("telegram", "stopped-worker", block_ms=10)) == 1
    await erase_session(store, "c2")
    await asyncio.sleep(0.2)
    assert await desk.outbox.abandoned("telegram", "new-worker", idle_ms=100) == []


async def test_conversations_are_found_by_their_words_or_id(
    redis_client: Redis, prefix: str
) -> None:
    """An operator finds the conversation a customer writes about: every word must occur (any
    case, in what the customer, the assistant or an operator wrote), or the id begin with it;
    the latest first, page by page, reading no more than it is allowed to."""
    store = SessionStore(redis_client, SessionKeys(prefix))
    now = time.time()
    said = {
        "3f2a91c0-old": ["my order 7781 never came", "I'm sorry to hear that."],
        "b0c1d2e3-mid": ["Where is ORDER 7781?", "Track it in your account."],
        "c4d5e6f7-new": ["do you ship to Canada?", "Yes, in 5 to 8 days."],
        "d8e9f0a1-sys": ["hello"],
    }
    for n, (session, texts) in enumerate(said.items()):
        turns = [Turn("user" if i % 2 == 0 else "assistant", t, now) for i, t in enumerate(texts)]
        await store.append(session, turns)
        async with redis_client.pipeline(transaction=False) as pipe:
            store.seen(pipe, session, now + n)
            await pipe.execute()
    await store.append("d8e9f0a1-sys", [Turn("system", "state: human (taken by olga)", now)])

    async def found(words: str, count: int = 10, **kwargs: object) -> list[str]:
        return [s.session_id for s, _ in await store.find(words, count, **kwargs)]  # type: ignore[arg-type]

    assert await found("order 7781") == ["b0c1d2e3-mid", "3f2a91c0-old"]
    assert await found("7781 sorry") == ["3f2a91c0-old"]  # the assistant's words count too
    assert await found("canada") == ["c4d5e6f7-new"]
    assert await found("3f2a91c0") == ["3f2a91c0-old"]  # as the team chat's notice names it
    assert await found("olga") == []  # not in what anyone wrote to anyone
    assert await found("7781", count=1) == ["b0c1d2e3-mid"]
    [(_, at)] = await store.find("7781", 1)
    assert await found("7781", before=at) == ["3f2a91c0-old"]
    assert await found("7781", looked_max=1) == []  # it reads the latest first, one page
    assert await found("  ") == ["d8e9f0a1-sys", "c4d5e6f7-new", "b0c1d2e3-mid", "3f2a91c0-old"]


async def test_a_conversation_holds_at_most_25_mb_of_files(
    redis_client: Redis, prefix: str
) -> None:
    """Files live in Redis's memory: one conversation keeps five of the largest at most, then
    refuses more, saying why; a dropped or erased one frees its share."""
    store = SessionStore(redis_client, SessionKeys(prefix))
    files = SessionFiles(store)
    largest = png(2, 2).ljust(MAX_FILE_BYTES, b"\0")
    kept = [await files.put("big", f"shot{i}.png", largest) for i in range(5)]
    with pytest.raises(BadFile) as refused:
        await files.put("big", "one more.png", png(2, 2))
    assert str(refused.value) == (
        "This conversation already holds 25.0 MB of files; the limit is 25 MB. Describe the "
        "rest in words, or send a link."
    )
    assert (await files.put("other", "fine.png", png(2, 2))).name == "fine.png"  # its own share
    await files.drop("big", kept[0].id)
    again = await files.put("big", "one more.png", png(2, 2))
    assert (await files.get("big", again.id)) == again
    erased = await erase_session(store, "big")
    assert erased.files == 5
    assert await redis_client.exists(SessionKeys(prefix).files_size("big")) == 0


async def test_the_team_keeps_at_most_200_saved_replies(redis_client: Redis, prefix: str) -> None:
    replies = SavedReplies(SessionStore(redis_client, SessionKeys(prefix)))
    for i in range(200):
        await replies.put(f"reply {i:03}", f"text {i}", "alice")
    with pytest.raises(BadSavedReply, match="200 saved replies at most: remove one first"):
        await replies.put("one more", "text", "alice")
    await replies.put("reply 007", "changed", "bob")  # replacing one is fine
    assert len(await replies.all()) == 200
    assert await replies.remove("reply 000") and not await replies.remove("reply 000")
    await replies.put("one more", "text", "alice")
