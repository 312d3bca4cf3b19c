"""`answerdesk serve` in a subprocess, configured as a new user's first run: no Redis URL (so
its own bundled redis-server), the bundled model and sample FAQ, real HTTP."""

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import redis

from tests.conftest import MODEL_CACHE

BIN = Path(sys.executable).parent / "answerdesk"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    data_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANSWERDESK_")}
        env.update(
            ANSWERDESK_DATA_DIR=str(self.data_dir),
            ANSWERDESK_MODEL_CACHE_DIR=str(MODEL_CACHE),
            ANSWERDESK_MAX_NEW_TOKENS="64",
            # `make test` runs two test files at once on two cores, and generation runs at the
            # lowest CPU priority: a reply may wait out the other file's CPU-heavy stretch (up to
            # a minute of tuning or fuzzing). The 30-s deadline customers get is tested on its own.
            ANSWERDESK_REPLY_TIMEOUT_S="110",
        )
        env.update(self.extra_env)
        return env

    def start(self) -> "Server":
        self.port = free_port()
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            [str(BIN), "serve", "--port", str(self.port)], env=self.env(), stdout=log, stderr=log
        )
        deadline = time.monotonic() + 300  # the first start converts the GGUF once
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                time.sleep(0.2)
        raise AssertionError("answerdesk serve did not become healthy:\n" + self.log())

    def stop(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        # uvicorn re-raises the signal after a clean shutdown, so the exit status is -SIGTERM.
        assert self.process.wait(timeout=30) in (0, -signal.SIGTERM), self.log()
        assert "Application shutdown complete" in self.log()

    def log(self) -> str:
        return (self.data_dir / "server.log").read_text(errors="replace")[-4000:]

    def chat(self, session_id: str, message: str) -> dict:
        r = httpx.post(
            f"{self.url}/api/chat",
            json={"session_id": session_id, "message": message},
            timeout=120,
        )
        assert r.status_code == 200, r.text
        return r.json()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(BIN), *args], env=self.env(), capture_output=True, text=True, timeout=120
        )

    def kb(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.cli("kb", *args)


def drop_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key a test's servers wrote under `prefix` in the shared Redis."""
    client = redis.Redis.from_url(redis_url)
    stale = list(client.scan_iter(match=f"{prefix}:*"))
    if stale:
        client.delete(*stale)
    client.close()
