"""Retrieval at scale: query latency (with and without the query embedding), index build time,
incremental update time and memory at 1k, 10k, 100k and 1M FAQ entries.

Entries are synthetic (a question, one alternative phrasing and an answer, made of random words
from a 20,000-word vocabulary). Embedding a million texts with MiniLM would take this CPU most of
an hour, so only a pool of 4,000 questions is embedded for real; every entry's vectors are a
pool vector plus noise. Queries use the real embedder. Each size runs in its own process, so its
RSS is its own.

    python -m tests.bench.bench_retrieval [--sizes 1000,10000,100000,1000000] [--queries 300]
"""

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np
from redis.asyncio import Redis

from adapters.runtime import build_embedder
from adapters.settings import Settings
from knowledge import FaqEntry, SearchIndex
from tests.bench import MODEL_CACHE

COMMAND = "python -m tests.bench.bench_retrieval"
POOL = 4000


def words(rng: np.random.Generator, vocabulary: list[str], low: int, high: int) -> str:
    picks = rng.zipf(1.3, rng.integers(low, high)) % len(vocabulary)
    return " ".join(vocabulary[int(i)] for i in picks)


def synthetic(count: int, rng: np.random.Generator) -> list[FaqEntry]:
    syllables = "ka lo mi ren to sa vi dor pel qua nix bro fu ge ha jo ly mo nu pi ru se ta we"
    parts = syllables.split()
    shuffled = ["".join(rng.choice(parts, int(rng.integers(2, 5)))) for _ in range(60_000)]
    vocabulary = list(dict.fromkeys(shuffled))[:20_000]
    return [
        FaqEntry(
            id=f"e{i}",
            question=f"How do I {words(rng, vocabulary, 4, 9)}?",
            answer=words(rng, vocabulary, 12, 30) + ".",
            alt_questions=(f"Can I {words(rng, vocabulary, 3, 8)}?",),
        )
        for i in range(count)
    ]


def rss_mb() -> float:
    """This process's peak resident memory."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def percentile(values: list[float], q: float) -> float:
    return round(float(np.percentile(values, q)), 2)


async def measure(entries_count: int, queries: int) -> dict[str, object]:
    rng = np.random.default_rng(entries_count)
    # The product's embedder as the server builds it (bfloat16 where the CPU has it, questions
    # through onnxruntime); the Redis it would cache in is never reached.
    settings = Settings(model_cache_dir=MODEL_CACHE)
    embedder = build_embedder(settings, Redis.from_url("redis://127.0.0.1:1"))
    entries = synthetic(entries_count, rng)
    pool_texts = [e.question for e in entries[:POOL]]
    pool = np.asarray(embedder.encode(pool_texts))  # the real model, without any cache
    rows = sum(len(e.texts) + 1 for e in entries)
    vectors = pool[rng.integers(0, len(pool), rows)]
    for start in range(0, rows, 100_000):  # in chunks: full-size temporaries would be the peak RSS
        part = vectors[start : start + 100_000]
        part += rng.standard_normal(part.shape, dtype=np.float32) * np.float32(0.03)
        part /= np.linalg.norm(part, axis=1, keepdims=True)
    del pool_texts
    baseline_mb = current_rss_mb() - vectors.nbytes / 2**20  # the index keeps `vectors`

    started = time.perf_counter()
    index = SearchIndex.build(entries, vectors)
    build_s = time.perf_counter() - started

    asked = rng.choice(min(POOL, entries_count), queries, replace=False)
    with_embedding, search_only = [], []
    for i in asked:
        text = entries[int(i)].question
        t0 = time.perf_counter()
        vector = await embedder.embed_query(text)
        t1 = time.perf_counter()
        index.search(vector, text, k=5)
        t2 = time.perf_counter()
        with_embedding.append((t2 - t0) * 1000)
        search_only.append((t2 - t1) * 1000)

    updates = []
    for n in range(20):
        entry = FaqEntry(f"new{n}", f"How do I update entry {n}?", "Like this.", ("Update?",))
        fresh = pool[rng.integers(0, len(pool), 3)]
        t0 = time.perf_counter()
        index.upsert(entry, fresh)
        index.remove(entries[n].id)
        updates.append((time.perf_counter() - t0) * 1000)
    t0 = time.perf_counter()
    index.rebuild_lexical()
    lexical_s = time.perf_counter() - t0
    return {
        "bench": "retrieval",
        "entries": entries_count,
        "rows": rows,
        "approximate": index.approximate,
        "queries": queries,
        "p50_ms": percentile(with_embedding, 50),
        "p95_ms": percentile(with_embedding, 95),
        "p50_ms_search_only": percentile(search_only, 50),
        "p95_ms_search_only": percentile(search_only, 95),
        "build_s": round(build_s, 2),
        "update_ms": percentile(updates, 50),
        "lexical_rebuild_s": round(lexical_s, 2),
        "rss_mb": round(rss_mb()),
        "index_mb": round(current_rss_mb() - baseline_mb),
        "threads": os.environ.get("OMP_NUM_THREADS", "default"),
        "command": f"{COMMAND} --sizes {entries_count}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000,100000,1000000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if args.one:
        print(json.dumps(asyncio.run(measure(args.one, args.queries))), flush=True)
        return
    for size in (int(s) for s in args.sizes.split(",")):
        one = [sys.executable, "-m", "tests.bench.bench_retrieval", "--one", str(size)]
        subprocess.run([*one, "--queries", str(args.queries)], check=True)


if __name__ == "__main__":
    main()
