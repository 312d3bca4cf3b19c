"""FAQ entries persisted in Redis."""

import json

from redis.asyncio import Redis
from redis.exceptions import RedisError
from redis.typing import EncodableT, FieldT

from knowledge.entry import FaqEntry
from knowledge.errors import KnowledgeError
from knowledge.keys import KnowledgeKeys


class KnowledgeStore:
    def __init__(self, redis: Redis, keys: KnowledgeKeys) -> None:
        self._redis = redis
        self._keys = keys

    async def entries(self) -> list[FaqEntry]:
        try:
            raw = await self._redis.hgetall(self._keys.entries)
        except RedisError as exc:
            raise KnowledgeError(f"Cannot read the knowledge base from Redis: {exc}") from exc
        items = sorted(raw.items())
        return [FaqEntry.from_dict(json.loads(v), where=f"stored entry {k!r}") for k, v in items]

    async def version(self) -> int:
        try:
            return int(await self._redis.get(self._keys.version) or 0)
        except RedisError as exc:
            raise KnowledgeError(f"Cannot read the knowledge base from Redis: {exc}") from exc

    async def count(self) -> int:
        return int(await self._redis.hlen(self._keys.entries))

    async def upsert(self, entry: FaqEntry) -> int:
        """Add or change one entry; every worker's index picks it up. Returns the new version."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._keys.entries, entry.id, json.dumps(entry.to_dict(), ensure_ascii=False)
                )
                pipe.incr(self._keys.version)
                result = await pipe.execute()
        except RedisError as exc:
            raise KnowledgeError(f"Cannot write to the knowledge base in Redis: {exc}") from exc
        return int(result[-1])

    async def replace(self, entries: list[FaqEntry]) -> int:
        """Make `entries` the whole knowledge base in one transaction; returns the new version."""
        mapping: dict[FieldT, EncodableT] = {
            e.id: json.dumps(e.to_dict(), ensure_ascii=False) for e in entries
        }
        if len(mapping) != len(entries):
            raise KnowledgeError("Entry ids must be unique")
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(self._keys.entries)
            if mapping:
                pipe.hset(self._keys.entries, mapping=mapping)
            pipe.incr(self._keys.version)
            result = await pipe.execute()
        return int(result[-1])
