"""Reply latency per answer mode through the real stack (bundled model, embedder, sample FAQ).

Run: `make bench` (or `python -m tests.bench.bench_chat [--rounds N]`). Prints one JSON line per
mode. Uses ANSWERDESK_REDIS_URL when set, else answerdesk's bundled redis-server in a temp folder.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from adapters.runtime import build_runtime
from adapters.settings import Settings
from bot import Inbound
from tests.bench import MODEL_CACHE

QUESTIONS = {
    "faq": ["how do I reset my password?", "are you open on sunday", "I got charged two times"],
    "grounded": ["can I pay later", "is there a shop in berlin", "where's my stuff"],
    "fallback": ["what is the capital of France?", "write me a poem", "how do I cook pasta"],
}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(rounds: int) -> None:
    command = " ".join([Path(sys.executable).name, "-m", "tests.bench.bench_chat", *sys.argv[1:]])
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            data_dir=Path(tmp),
            redis_url=os.environ.get("ANSWERDESK_REDIS_URL") or None,
            redis_prefix=f"adbench-{uuid.uuid4().hex[:8]}",
            model_cache_dir=MODEL_CACHE,
            handoff_after_fallbacks=0,  # measure fallbacks, not the handoff they lead to
        )
        started = time.perf_counter()
        async with build_runtime(settings) as runtime:
            startup_s = time.perf_counter() - started
            for expected, questions in QUESTIONS.items():
                times: list[float] = []
                modes: list[str] = []
                for i in range(rounds):
                    for question in questions:
                        t = time.perf_counter()
                        reply = await runtime.manager.ask(Inbound(f"bench-{i}", question))
                        times.append((time.perf_counter() - t) * 1000)
                        modes.append(reply.mode)
                print(
                    json.dumps(
                        {
                            "bench": "chat",
                            "mode": expected,
                            "requests": len(times),
                            "modes_seen": sorted(set(modes)),
                            "p50_ms": round(statistics.median(times), 1),
                            "p95_ms": round(percentile(times, 0.95), 1),
                            "startup_s": round(startup_s, 2),
                            "command": command,
                        }
                    ),
                    flush=True,
                )
            keys = [k async for k in runtime.redis.scan_iter(match=f"{settings.redis_prefix}:*")]
            if keys:
                await runtime.redis.delete(*keys)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="times each question is asked")
    args = parser.parse_args()
    asyncio.run(run(args.rounds))


if __name__ == "__main__":
    main()
