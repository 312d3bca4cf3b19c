import asyncio

from redis.asyncio import Redis

from bot import SessionKeys, SessionStore, Source, Turn


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
