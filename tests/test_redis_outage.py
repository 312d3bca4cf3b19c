"""Redis going away while the server runs: a clear 503, no crash, nothing lost when it returns."""

import asyncio
import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from adapters.redis_server import RedisServer
from tests.bench.bench_load import SERVER_ENV, run_load
from tests.server import Server


def test_a_redis_outage_gives_503_and_the_conversation_survives(tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "redis").start()
    server = Server(tmp_path / "app", extra_env={"ANSWERDESK_REDIS_URL": redis.url})
    server.data_dir.mkdir()
    server.start()
    try:
        before = server.chat("outage", "how do I reset my password?")
        redis.stop()
        r = httpx.post(
            f"{server.url}/api/chat",
            json={"session_id": "outage", "message": "What are your opening hours?"},
            timeout=30,
        )
        assert r.status_code == 503
        assert r.headers["retry-after"] == "5"
        assert "storage is unavailable" in r.json()["error"]
        assert httpx.get(f"{server.url}/api/chat/outage/history", timeout=30).status_code == 503

        redis.start()  # the same folder: its append-only file brings the data back
        after = server.chat("outage", "What are your opening hours?")
        assert after["mode"] == "faq"
        turns = httpx.get(f"{server.url}/api/chat/outage/history", timeout=30).json()["turns"]
        assert [t["text"] for t in turns] == [
            "how do I reset my password?",
            before["reply"],
            "What are your opening hours?",
            after["reply"],
        ]
    finally:
        if server.process and server.process.poll() is None:
            server.stop()
        redis.stop()


@pytest.mark.serial
async def test_redis_killed_mid_load_gives_503s_then_recovers_and_loses_nothing(
    tmp_path: Path,
) -> None:
    """50 customers keep asking while Redis is killed (SIGKILL, as a crash) and restarted 4 s
    later from its append-only file."""
    redis = RedisServer(tmp_path / "redis").start()
    env = {
        **SERVER_ENV,
        "ANSWERDESK_REDIS_URL": redis.url,
        "ANSWERDESK_MAX_NEW_TOKENS": "32",
        "ANSWERDESK_MODEL_MAX_WAITING": "2",
    }
    server = Server(tmp_path / "app", extra_env=env)
    server.data_dir.mkdir()
    server.start()
    try:
        load = asyncio.create_task(run_load(server.url, users=50, seconds=24, answer_within_s=60))
        await asyncio.sleep(8)
        assert redis.pid is not None
        os.kill(redis.pid, signal.SIGKILL)
        killed = time.monotonic()
        await asyncio.sleep(4)
        redis.stop()  # reaps the killed process
        await asyncio.to_thread(redis.start)  # the same folder: the append-only file
        back = time.monotonic()
        result = await load
    finally:
        if server.process and server.process.poll() is None:
            server.stop()
        redis.stop()

    failed = [(at, status, retry) for at, status, retry in result.timeline if status != 200]
    # During the outage customers got a clear "try again" answer, never another error or a hang
    # (no answer within 60 s; under this load a reply that waits for the model takes up to ~30 s).
    assert failed, "the outage was not noticed"
    assert {(status, retry) for _, status, retry in failed} == {(503, "5")}
    assert all(killed <= at <= back + 5 for at, _, _ in failed)
    # Service before the crash and again within 5 s of Redis coming back.
    assert any(status == 200 and at < killed for at, status, _ in result.timeline)
    recovered = [at for at, status, _ in result.timeline if status == 200 and at > back]
    assert recovered and recovered[0] - back < 5
    assert sum(1 for at in recovered if at > back + 5) > 100
    # Every answered turn is in the history afterwards: the append-only file kept them.
    assert result.lost_turns == 0
