"""Redis going away while the server runs: a clear 503, no crash, nothing lost when it returns."""

from pathlib import Path

import httpx

from adapters.redis_server import RedisServer
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
