"""Load: simulated customers over HTTP with a mix of FAQ, generated and out-of-scope questions.

Run: `make bench-load` (50 users, 5 minutes, against a server it starts itself) or
`python -m tests.bench.bench_load --users 50 --seconds 300 [--url http://host:port]`.
Prints one JSON line per answer mode: requests, errors, rps, p50/p95 latency, lost turns (turns a
customer got an answer for that are missing from the stored history afterwards).
"""

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

QUESTIONS = {
    "faq": [
        "how do I reset my password?",
        "What are your opening hours?",
        "How much does shipping cost?",
        "Are returns free?",
        "Which countries do you ship to?",
        "How can I track my order?",
    ],
    "grounded": ["can I pay later", "is there a shop in berlin", "where's my stuff"],
    "fallback": ["what is the capital of France?", "write me a poem", "how do I cook pasta"],
}
MIX = {"faq": 0.7, "fallback": 0.2, "grounded": 0.1}
# A customer here sends hundreds of messages: no rate limit, and a history long enough to hold
# every turn, so that "lost_turns" counts losses, not the history cap.
SERVER_ENV = {
    "ANSWERDESK_RATE_LIMIT": "100000/minute",
    "ANSWERDESK_HISTORY_MAX_TURNS": "100000",
    "ANSWERDESK_HANDOFF_AFTER_FALLBACKS": "0",
}


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)  # session -> answered turns
    lost_turns: int = 0
    seconds: float = 0.0
    # (time.monotonic() when the answer came, HTTP status, Retry-After); status 0 and the
    # exception's name when no answer came
    timeline: list[tuple[float, int, str | None]] = field(default_factory=list)

    def lines(self, command: str, users: int) -> list[dict[str, object]]:
        out = []
        for kind in MIX:
            times = sorted(self.latencies.get(kind, []))
            n = len(times)
            out.append(
                {
                    "bench": "load",
                    "mode": kind,
                    "users": users,
                    "seconds": round(self.seconds, 1),
                    "requests": n + self.errors.get(kind, 0),
                    "errors": self.errors.get(kind, 0),
                    "rps": round(n / self.seconds, 1) if self.seconds else 0,
                    "p50_ms": round(statistics.median(times) * 1000, 1) if n else None,
                    "p95_ms": round(times[min(n - 1, int(0.95 * n))] * 1000, 1) if n else None,
                    "lost_turns": self.lost_turns,
                    "command": command,
                }
            )
        return out


async def run_load(
    url: str, users: int, seconds: float, seed: int = 7, answer_within_s: float = 120
) -> Result:
    """`users` customers, each asking, reading (0.2-0.6 s) and asking again until `seconds`.
    A request without an answer within `answer_within_s` seconds counts as an error."""
    rng = random.Random(seed)
    result = Result()
    run = uuid.uuid4().hex[:6]
    limits = httpx.Limits(max_connections=users + 10, max_keepalive_connections=users + 10)
    async with httpx.AsyncClient(base_url=url, timeout=answer_within_s, limits=limits) as client:
        deadline = time.monotonic() + seconds

        async def customer(n: int) -> None:
            session = f"load-{run}-{n}"
            while time.monotonic() < deadline:
                kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
                question = rng.choice(QUESTIONS[kind])
                started = time.perf_counter()
                try:
                    r = await client.post(
                        "/api/chat", json={"session_id": session, "message": question}
                    )
                    status, retry_after = r.status_code, r.headers.get("retry-after")
                except httpx.HTTPError as exc:
                    status, retry_after = 0, type(exc).__name__
                result.timeline.append((time.monotonic(), status, retry_after))
                ok = status == 200
                if ok:
                    result.latencies.setdefault(kind, []).append(time.perf_counter() - started)
                    result.accepted[session] = result.accepted.get(session, 0) + 1
                else:
                    result.errors[kind] = result.errors.get(kind, 0) + 1
                await asyncio.sleep(rng.uniform(0.2, 0.6))

        started = time.monotonic()
        await asyncio.gather(*(customer(n) for n in range(users)))
        result.seconds = time.monotonic() - started
        for session, answered in result.accepted.items():
            history = (await client.get(f"/api/chat/{session}/history")).json()["turns"]
            stored = sum(1 for t in history if t["role"] == "assistant")
            result.lost_turns += max(0, answered - stored)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--url", help="a running answerdesk; default: start one")
    args = parser.parse_args()
    command = " ".join([Path(sys.executable).name, "-m", "tests.bench.bench_load", *sys.argv[1:]])
    if args.url:
        result = asyncio.run(run_load(args.url, args.users, args.seconds))
    else:
        from tests.server import Server

        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), extra_env=SERVER_ENV)
            server.start()
            try:
                result = asyncio.run(run_load(server.url, args.users, args.seconds))
            finally:
                server.stop()
    for line in result.lines(command, args.users):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
