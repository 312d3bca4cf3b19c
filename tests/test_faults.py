"""Faults with real processes: SIGTERM in the middle of a streamed reply, and two workers that
share one Redis with no balancer in front (requests alternate between them), one of which is
killed in the middle of a reply."""

import signal
import time
import uuid
from pathlib import Path

import httpx

from tests.server import Server, drop_prefix


def test_sigterm_mid_stream_finishes_the_reply_and_keeps_sessions(tmp_path: Path) -> None:
    server = Server(tmp_path, extra_env={"ANSWERDESK_MAX_NEW_TOKENS": "60"}).start()
    before = server.chat("keep", "how do I reset my password?")
    events: list[str] = []
    body = {"session_id": "inflight", "message": "can I pay later"}
    with httpx.stream("POST", f"{server.url}/api/chat/stream", json=body, timeout=60) as r:
        for line in r.iter_lines():
            if line.startswith("event: "):
                events.append(line[7:])
                if events == ["token"]:
                    assert server.process is not None
                    server.process.send_signal(signal.SIGTERM)  # mid-reply
    assert events[0] == "token" and events[-1] == "done"  # the reply in flight completed
    assert server.process is not None and server.process.wait(timeout=30) in (0, -signal.SIGTERM)

    server.start()  # same data folder: the bundled Redis's append-only file
    keep = httpx.get(f"{server.url}/api/chat/keep/history", timeout=30).json()["turns"]
    assert [t["text"] for t in keep] == ["how do I reset my password?", before["reply"]]
    inflight = httpx.get(f"{server.url}/api/chat/inflight/history", timeout=30).json()["turns"]
    assert [t["role"] for t in inflight] == ["user", "assistant"]
    server.stop()


def test_two_workers_share_sessions_through_redis(tmp_path: Path, redis_url: str) -> None:
    env = {
        "ANSWERDESK_REDIS_URL": redis_url,
        "ANSWERDESK_REDIS_PREFIX": f"adtest-workers-{uuid.uuid4().hex[:8]}",
        "ANSWERDESK_ADMIN_TOKEN": "workers",
    }
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = Server(tmp_path / "a", extra_env=env).start()
    b = Server(tmp_path / "b", extra_env=env).start()
    try:
        questions = [
            "how do I reset my password?",
            "What are your opening hours?",
            "How much does shipping cost?",
            "what is the capital of France?",
            "Are returns free?",
            "Which countries do you ship to?",
        ]
        replies = [(a if i % 2 == 0 else b).chat("shared", q) for i, q in enumerate(questions)]
        for worker in (a, b):
            turns = httpx.get(f"{worker.url}/api/chat/shared/history", timeout=30).json()["turns"]
            assert [t["text"] for t in turns[0::2]] == questions
            assert [t["text"] for t in turns[1::2]] == [r["reply"] for r in replies]
        # An operator on one worker, the customer on the other.
        assert b.chat("shared-h", "talk to a human please")["mode"] == "handoff"
        auth = {"authorization": "Bearer workers"}
        took = httpx.post(
            f"{a.url}/admin/handoff/shared-h/take", json={"operator": "ann"}, headers=auth
        )
        assert took.status_code == 200
        assert b.chat("shared-h", "hello?")["state"] == "human"
        started = time.monotonic()
        assert httpx.post(
            f"{a.url}/admin/handoff/shared-h/release", json={"operator": "ann"}, headers=auth
        ).is_success
        assert b.chat("shared-h", "how do I reset my password?")["mode"] == "faq"
        assert time.monotonic() - started < 5
        # Worker a dies (SIGKILL: out of memory, a host failure) while it writes a reply, so it
        # never releases that session's lock: the customer's next message, on b, is answered once
        # the lock's lease (10 s, renewed while a turn runs) runs out, not a turn's wait limit.
        body = {"session_id": "crash", "message": "can I pay later"}
        with httpx.stream("POST", f"{a.url}/api/chat/stream", json=body, timeout=60) as r:
            for line in r.iter_lines():
                if line == "event: token":
                    assert a.process is not None
                    a.process.kill()
                    break
        assert a.process is not None and a.process.wait(timeout=10) == -signal.SIGKILL
        started = time.monotonic()
        assert b.chat("crash", "how do I reset my password?")["mode"] == "faq"
        assert time.monotonic() - started < 15
        turns = httpx.get(f"{b.url}/api/chat/crash/history", timeout=30).json()["turns"]
        asked = [t["text"] for t in turns if t["role"] == "user"]
        assert asked == ["how do I reset my password?"]  # the lost reply left nothing half-kept
    finally:
        for worker in (a, b):
            if worker.process is not None and worker.process.poll() is None:
                worker.stop()
        drop_prefix(redis_url, env["ANSWERDESK_REDIS_PREFIX"])
