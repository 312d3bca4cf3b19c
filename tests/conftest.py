"""Shared fixtures: a real Redis (never a fake), the real bundled embedder and model."""

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from redis.asyncio import Redis

if TYPE_CHECKING:
    from tests.server import Server

from adapters.redis_server import RedisServer, connect, redis_answers
from engine import LocalModel
from knowledge import (
    Embedder,
    FaqEntry,
    KnowledgeKeys,
    KnowledgeStore,
    Retriever,
    read_entries,
    sample_faq_path,
)

ROOT = Path(__file__).resolve().parent.parent
# The bundled GGUF is converted once to a safetensors directory; tests share that cache.
MODEL_CACHE = Path(os.environ.get("ANSWERDESK_TEST_MODEL_CACHE", ROOT / ".cache" / "models"))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """ANSWERDESK_TEST_REDIS_URL, else the machine's Redis on 127.0.0.1:6379, else a bundled one."""
    configured = os.environ.get("ANSWERDESK_TEST_REDIS_URL")
    if configured:
        assert redis_answers(configured), f"ANSWERDESK_TEST_REDIS_URL={configured} does not answer"
        yield configured
        return
    if redis_answers("redis://127.0.0.1:6379/0"):
        yield "redis://127.0.0.1:6379/0"
        return
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[Redis]:
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis_client: Redis) -> AsyncIterator[str]:
    """A key prefix of this test alone; every key under it is deleted afterwards."""
    name = f"adtest-{uuid.uuid4().hex[:12]}"
    yield name
    keys = [key async for key in redis_client.scan_iter(match=f"{name}:*", count=1000)]
    if keys:
        await redis_client.delete(*keys)


@pytest.fixture(scope="session")
def sample_entries() -> list[FaqEntry]:
    return read_entries(sample_faq_path())


@pytest.fixture(scope="session")
async def embedder(redis_url: str) -> AsyncIterator[Embedder]:
    """The bundled all-MiniLM-L6-v2; its cache keys live under a prefix dropped at the end."""
    client = connect(redis_url)
    keys = KnowledgeKeys(f"adtest-emb-{uuid.uuid4().hex[:12]}")
    yield Embedder(None, client, keys)
    stale = [k async for k in client.scan_iter(match=f"{keys.prefix}:*", count=1000)]
    if stale:
        await client.delete(*stale)
    await client.aclose()


@pytest.fixture
async def sample_retriever(
    redis_client: Redis, prefix: str, embedder: Embedder, sample_entries: list[FaqEntry]
) -> Retriever:
    store = KnowledgeStore(redis_client, KnowledgeKeys(prefix))
    await store.replace(sample_entries)
    retriever = Retriever(store, embedder)
    await retriever.calibrate()  # as the product does after every import
    return retriever


@pytest.fixture(scope="session")
def local_model() -> LocalModel:
    """The bundled SmolLM2-135M-Instruct, as answerdesk serves it by default."""
    return LocalModel.load(None, MODEL_CACHE)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator["Server"]:
    """answerdesk as a new user starts it (see tests/server.py), one per test module."""
    from tests.server import Server

    running = Server(tmp_path_factory.mktemp("answerdesk-data")).start()
    yield running
    if running.process and running.process.poll() is None:
        running.stop()
