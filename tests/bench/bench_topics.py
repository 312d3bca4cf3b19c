"""The unanswered queue by topic (`bot.unanswered_topics`) on labelled FAQ sets: how many topics
the operators read instead of questions, how pure they are (the share of questions in a topic
whose most common label is theirs), and how long the desk waits for the list.

Each set's labelled questions stand in for questions the FAQ did not answer: `--questions` of
them (the desk lists 100), drawn at random, go into the unanswered queue of a knowledge base
made of the set's `kb.jsonl`, in a real Redis (`ANSWERDESK_REDIS_URL`, default the machine's),
under a prefix of their own, removed afterwards. Nothing is tuned on them.

    python -m tests.bench.bench_topics [--data ../shared/data] [--questions 100]
"""

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections import Counter
from pathlib import Path

from redis.asyncio import Redis

from adapters.runtime import build_embedder
from adapters.settings import Settings
from bot import FeedbackLog, SessionKeys, SessionStore, UnansweredTopics
from knowledge import KnowledgeKeys, KnowledgeStore, Retriever, read_entries
from tests.bench import MODEL_CACHE, ROOT

COMMAND = "python -m tests.bench.bench_topics"


async def measure(data: Path, count: int, redis: Redis, prefix: str) -> dict[str, object]:
    settings = Settings(model_cache_dir=MODEL_CACHE, redis_prefix=prefix)
    store = KnowledgeStore(redis, KnowledgeKeys(prefix))
    await store.replace(read_entries(data / "kb.jsonl"))
    retriever = Retriever(store, build_embedder(settings, redis))
    await retriever.refresh()
    labelled = [json.loads(line) for line in (data / "queries.jsonl").open()]
    asked = random.Random(0).sample([q for q in labelled if q.get("expected_id")], count)
    feedback = FeedbackLog(SessionStore(redis, SessionKeys(prefix)))
    label = {}
    for n, question in enumerate(asked):
        item = await feedback.add("fallback", f"s{n}", question["query"], "I don't know.")
        label[item] = question["expected_id"]
    topics = UnansweredTopics(feedback, retriever)
    started = time.perf_counter()
    found = await topics.topics(count)
    first_ms = (time.perf_counter() - started) * 1000
    started = time.perf_counter()
    await topics.topics(count)
    next_ms = (time.perf_counter() - started) * 1000
    pure = sum(Counter(label[i.id] for i in t.items).most_common(1)[0][1] for t in found)
    return {
        "bench": "topics",
        "set": data.name,
        "questions": count,
        "labels": len(set(label.values())),
        "topics": len(found),
        "in_topics_of_2_or_more": sum(len(t.items) for t in found if len(t.items) > 1),
        "purity": round(pure / count, 3),
        "topic_threshold": round(await retriever.topic_threshold(), 3),
        "first_listing_ms": round(first_ms, 1),
        "next_listing_ms": round(next_ms, 1),
        "command": COMMAND,
    }


async def run(sets: list[Path], count: int) -> None:
    redis = Redis.from_url(os.environ.get("ANSWERDESK_REDIS_URL", "redis://127.0.0.1:6379/0"))
    try:
        for folder in sets:
            prefix = f"bench-topics-{uuid.uuid4().hex[:8]}"
            try:
                print(json.dumps(await measure(folder, count, redis, prefix)), flush=True)
            finally:
                stale = [k async for k in redis.scan_iter(match=f"{prefix}:*", count=1000)]
                if stale:
                    await redis.delete(*stale)
    finally:
        await redis.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--questions", type=int, default=100)
    args = parser.parse_args()
    if not args.data.is_dir():
        raise SystemExit(f"No labelled FAQ sets in {args.data}: pass --data DIR.")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sets = sorted(p for p in args.data.iterdir() if (p / "queries.jsonl").exists())
    asyncio.run(run(sets, args.questions))


if __name__ == "__main__":
    main()
