"""Load: simulated customers over HTTP with a mix of FAQ, generated and out-of-scope questions.

Run: `make bench-load` (50 users asking 100 questions a second in all, for 5 minutes, against a
server it starts itself) or
`python -m tests.bench.bench_load --users 50 --rps 100 --seconds 300 [--url http://host:port]`.
The questions arrive at the given rate whatever the server does (an open loop: each customer asks
at random, Poisson-distributed times, and may ask again before the last answer came, as people do
in a chat), so a slow server is measured at that rate, not at the lower rate its slowness allows.
Prints one JSON line per question kind: requests, errors, rps, p50/p95 latency, the reply modes
those questions got, lost turns (turns a customer got an answer for that are missing from the
stored history afterwards).
"""

import argparse
import asyncio
import json
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import uvloop
from prometheus_client.parser import text_string_to_metric_families

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
MAX_UNANSWERED = 3  # questions one customer has sent and not yet had answered
# A customer here sends hundreds of messages: no rate limit, and a history long enough to hold
# every turn, so that "lost_turns" counts losses, not the history cap.
SERVER_ENV = {
    "ANSWERDESK_RATE_LIMIT": "100000/minute",
    "ANSWERDESK_HISTORY_MAX_TURNS": "100000",
    "ANSWERDESK_HANDOFF_AFTER_FALLBACKS": "0",
    "ANSWERDESK_REPLY_TIMEOUT_S": "30",  # the default, which tests' servers raise
}


@dataclass
class Result:
    latencies: dict[str, list[float]] = field(default_factory=dict)
    # the same, for the questions a customer asked while none of theirs was unanswered: answers
    # of one session come in order, so a question asked behind one the model is still writing
    # waits for that reply
    latencies_alone: dict[str, list[float]] = field(default_factory=dict)
    errors: dict[str, int] = field(default_factory=dict)
    # question kind -> what its failures were: an HTTP status, or the exception of no answer
    error_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    accepted: dict[str, int] = field(default_factory=dict)  # session -> answered turns
    # question kind -> the reply modes it got: a grounded question may be answered "grounded" by
    # the model or, while the model is busy, with the closest FAQ entry
    modes: dict[str, dict[str, int]] = field(default_factory=dict)
    lost_turns: int = 0
    generated_chunks: float | None = None  # text chunks the model streamed (from /metrics)
    # prompt tokens the model ran, and those it reused from a recent prompt (from /metrics)
    prompt_tokens: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0  # questions were asked during this window
    drain_s: float = 0.0  # and the last answer came this long after it
    # (time.monotonic() when the answer came, HTTP status, Retry-After); status 0 and the
    # exception's name when no answer came
    timeline: list[tuple[float, int, str | None]] = field(default_factory=list)

    def lines(self, command: str, users: int, offered_rps: float) -> list[dict[str, object]]:
        out = []
        for kind in MIX:
            times = sorted(self.latencies.get(kind, []))
            n = len(times)
            alone = sorted(self.latencies_alone.get(kind, []))
            out.append(
                {
                    "bench": "load",
                    "mode": kind,
                    "users": users,
                    "offered_rps": offered_rps,
                    "seconds": round(self.seconds, 1),
                    "drain_s": round(self.drain_s, 1),
                    "requests": n + self.errors.get(kind, 0),
                    "errors": self.errors.get(kind, 0),
                    "error_kinds": self.error_kinds.get(kind, {}),
                    "rps": round(n / self.seconds, 1) if self.seconds else 0,
                    "p50_ms": _percentile_ms(times, 0.5),
                    "p95_ms": _percentile_ms(times, 0.95),
                    "alone_share": round(len(alone) / n, 3) if n else None,
                    "alone_p50_ms": _percentile_ms(alone, 0.5),
                    "alone_p95_ms": _percentile_ms(alone, 0.95),
                    "reply_modes": self.modes.get(kind, {}),
                    "lost_turns": self.lost_turns,
                    "generated_chunks": self.generated_chunks,
                    "prompt_tokens_run": self.prompt_tokens.get("run"),
                    "prompt_tokens_reused": self.prompt_tokens.get("reused"),
                    "command": command,
                }
            )
        return out


def _percentile_ms(ordered: list[float], share: float) -> float | None:
    if not ordered:
        return None
    return round(ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000, 1)


async def run_load(
    url: str,
    users: int,
    seconds: float,
    rps: float = 100,
    seed: int = 7,
    answer_within_s: float = 120,
) -> Result:
    """`users` customers asking `rps` questions a second in all until `seconds`. A request
    without an answer within `answer_within_s` seconds counts as an error."""
    rng = random.Random(seed)
    result = Result()
    run = uuid.uuid4().hex[:6]
    # An idle connection is dropped before the server's keep-alive timeout (uvicorn: 5 s) ends
    # it: a request sent on a connection the server is closing fails with ServerDisconnectedError.
    # aiohttp on uvloop rather than httpx: the load generator shares the 2 cores with the server,
    # and for 40 s at 100 questions a second httpx took 11 s of CPU, aiohttp 3.5 s.
    connector = aiohttp.TCPConnector(limit=users + 10, keepalive_timeout=4.0)
    timeout = aiohttp.ClientTimeout(total=answer_within_s)
    async with aiohttp.ClientSession(url, connector=connector, timeout=timeout) as client:
        deadline = time.monotonic() + seconds

        open_questions: dict[str, int] = {}  # session -> questions asked, not yet answered

        async def ask(session: str) -> None:
            kind = rng.choices(list(MIX), weights=list(MIX.values()))[0]
            question = rng.choice(QUESTIONS[kind])
            alone = not open_questions.get(session)
            open_questions[session] = open_questions.get(session, 0) + 1
            started = time.perf_counter()
            body: dict = {}
            try:
                async with client.post(
                    "/api/chat", json={"session_id": session, "message": question}
                ) as r:
                    status, retry_after = r.status, r.headers.get("retry-after")
                    if status == 200:
                        body = await r.json()
            except (aiohttp.ClientError, TimeoutError) as exc:
                status, retry_after = 0, type(exc).__name__
            open_questions[session] -= 1
            result.timeline.append((time.monotonic(), status, retry_after))
            if status == 200:
                took = time.perf_counter() - started
                result.latencies.setdefault(kind, []).append(took)
                if alone:
                    result.latencies_alone.setdefault(kind, []).append(took)
                result.accepted[session] = result.accepted.get(session, 0) + 1
                modes = result.modes.setdefault(kind, {})
                modes[body["mode"]] = modes.get(body["mode"], 0) + 1
            else:
                result.errors[kind] = result.errors.get(kind, 0) + 1
                failed = result.error_kinds.setdefault(kind, {})
                what = str(status) if status else str(retry_after)
                failed[what] = failed.get(what, 0) + 1

        async def customer(n: int) -> None:
            """Questions at random (Poisson) times, whether or not the last one was answered,
            but never more than `MAX_UNANSWERED` at once: then the next waits for an answer."""
            session, asked = f"load-{run}-{n}", []
            unanswered = asyncio.Semaphore(MAX_UNANSWERED)

            async def ask_when_allowed() -> None:
                async with unanswered:
                    await ask(session)

            due = time.monotonic() + rng.expovariate(rps / users)
            while due < deadline:
                await asyncio.sleep(due - time.monotonic())
                await unanswered.acquire()  # a customer with three questions unanswered waits
                unanswered.release()
                asked.append(asyncio.create_task(ask_when_allowed()))
                due += rng.expovariate(rps / users)  # late (busy client, cap): catch up
            await asyncio.gather(*asked)

        started = time.monotonic()
        await asyncio.gather(*(customer(n) for n in range(users)))
        result.seconds = seconds
        result.drain_s = max(0.0, time.monotonic() - started - seconds)
        for session, answered in result.accepted.items():
            async with client.get(f"/api/chat/{session}/history") as r:
                history = (await r.json())["turns"]
            stored = sum(1 for t in history if t["role"] == "assistant")
            result.lost_turns += max(0, answered - stored)
        async with client.get("/metrics") as r:
            metrics = await r.text() if r.status == 200 else ""
        if metrics:
            for family in text_string_to_metric_families(metrics):
                totals = [s for s in family.samples if s.name.endswith("_total")]
                if family.name == "answerdesk_generated_chunks":
                    result.generated_chunks = sum(s.value for s in totals)
                elif family.name == "answerdesk_prompt_tokens":
                    result.prompt_tokens = {s.labels["source"]: s.value for s in totals}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--rps", type=float, default=100, help="questions a second, all users")
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--url", help="a running answerdesk; default: start one")
    args = parser.parse_args()
    command = " ".join([Path(sys.executable).name, "-m", "tests.bench.bench_load", *sys.argv[1:]])
    if args.url:
        result = uvloop.run(run_load(args.url, args.users, args.seconds, args.rps))
    else:
        from tests.server import Server

        with tempfile.TemporaryDirectory() as tmp:
            server = Server(Path(tmp), extra_env=SERVER_ENV)
            server.start()
            try:
                result = uvloop.run(run_load(server.url, args.users, args.seconds, args.rps))
            finally:
                server.stop()
    for line in result.lines(command, args.users, args.rps):
        print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main()
