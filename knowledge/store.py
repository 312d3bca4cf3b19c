"""FAQ entries persisted in Redis, with every earlier version kept for history and revert.

Each write is one Redis transaction (WATCH/MULTI) that updates the entry, appends to its history,
bumps the knowledge base's version and records the change in a stream that running workers read
to update their search index incrementally.
"""

import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline
from redis.exceptions import RedisError, WatchError

from knowledge.entry import FaqEntry
from knowledge.errors import EntryExists, EntryNotFound, KnowledgeError
from knowledge.keys import KnowledgeKeys

WHOLE_KB = "*"  # the change-stream id of a change to the whole knowledge base
_BULK = 500  # imports changing more entries than this are announced as one whole-KB change
_CHANGES_KEPT = 10_000


@dataclass(frozen=True)
class EntryRecord:
    """One version of one entry; `entry` is None for the version that deleted it."""

    id: str
    version: int
    created: float
    updated: float
    entry: FaqEntry | None
    by: str = ""  # who made this version: an operator, "command line"; "" when not known

    @property
    def deleted(self) -> bool:
        return self.entry is None

    def to_json(self) -> str:
        data: dict[str, Any] = {
            "id": self.id,
            "version": self.version,
            "created": self.created,
            "updated": self.updated,
            "entry": None if self.entry is None else self.entry.to_dict(),
            "by": self.by,
        }
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, raw: bytes | str) -> "EntryRecord":
        data = json.loads(raw)
        if "entry" not in data:  # written by answerdesk 0.1 before entries had versions
            data = {"id": data.get("id"), "version": 1, "created": 0, "updated": 0, "entry": data}
        entry = data["entry"]
        return cls(
            id=data["id"],
            version=int(data["version"]),
            created=float(data["created"]),
            updated=float(data["updated"]),
            entry=None if entry is None else FaqEntry.from_dict(entry, f"stored {data['id']!r}"),
            by=str(data.get("by", "")),
        )


@dataclass(frozen=True)
class Change:
    stream_id: str
    entry_id: str  # WHOLE_KB when the change touched too much to list


@dataclass(frozen=True)
class ImportResult:
    added: int
    updated: int
    unchanged: int
    removed: int
    version: int


Writer = Callable[[Pipeline, dict[str, EntryRecord]], Awaitable[Any]]


class KnowledgeStore:
    def __init__(self, redis: Redis, keys: KnowledgeKeys) -> None:
        self._redis = redis
        self.keys = keys

    # -- reading ------------------------------------------------------------------------------

    async def records(self) -> list[EntryRecord]:
        """The current version of every entry, by id."""
        raw = await self._read(self._redis.hgetall(self.keys.entries))
        return [EntryRecord.from_json(v) for _, v in sorted(raw.items())]

    async def entries(self) -> list[FaqEntry]:
        return [r.entry for r in await self.records() if r.entry is not None]

    async def get(self, entry_id: str) -> EntryRecord:
        raw = await self._read(self._redis.hget(self.keys.entries, entry_id))
        if raw is None:
            raise EntryNotFound(f"No FAQ entry with id {entry_id!r}.")
        return EntryRecord.from_json(raw)

    async def get_many(self, entry_ids: list[str]) -> dict[str, EntryRecord | None]:
        """Current records by id (None for ids that are gone), in one round trip."""
        if not entry_ids:
            return {}
        raw = await self._read(self._redis.hmget(self.keys.entries, entry_ids))
        return {
            i: None if r is None else EntryRecord.from_json(r)
            for i, r in zip(entry_ids, raw, strict=True)
        }

    async def history(self, entry_id: str) -> list[EntryRecord]:
        """Every version of an entry, oldest first (deletions included)."""
        raw = await self._read(self._redis.hvals(self.keys.history(entry_id)))
        if not raw:
            raise EntryNotFound(f"No FAQ entry with id {entry_id!r} has ever existed.")
        return sorted((EntryRecord.from_json(r) for r in raw), key=lambda r: r.version)

    async def version(self) -> int:
        return int(await self._read(self._redis.get(self.keys.version)) or 0)

    async def count(self) -> int:
        return int(await self._read(self._redis.hlen(self.keys.entries)))

    async def changes_since(self, stream_id: str) -> list[Change] | None:
        """Changes recorded after `stream_id`, oldest first; None when some were trimmed away."""
        first = await self._read(self._redis.xrange(self.keys.changes, "-", "+", count=1))
        if (
            first
            and stream_id != "0"
            and _stream_order(first[0][0].decode()) > _stream_order(stream_id)
        ):
            return None
        start = "-" if stream_id == "0" else f"({stream_id}"
        rows = await self._read(self._redis.xrange(self.keys.changes, start, "+"))
        if stream_id == "0" and rows:
            return None  # never read before: everything is new
        return [Change(rid.decode(), f[b"id"].decode()) for rid, f in rows]

    async def last_change(self) -> str:
        rows = await self._read(self._redis.xrevrange(self.keys.changes, "+", "-", count=1))
        return rows[0][0].decode() if rows else "0"

    async def calibration(self) -> dict[str, Any] | None:
        raw = await self._read(self._redis.get(self.keys.calibration))
        return None if raw is None else json.loads(raw)

    async def save_calibration(self, data: dict[str, Any]) -> int:
        """Store new thresholds; the version bump makes every worker load them."""
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.set(self.keys.calibration, json.dumps(data))
                pipe.incr(self.keys.version)
                return int((await pipe.execute())[-1])
        except RedisError as exc:
            raise KnowledgeError(f"Cannot write to the knowledge base in Redis: {exc}") from exc

    # -- writing ------------------------------------------------------------------------------

    # `by`: who makes the change, kept with the version (an operator's name, "command line").

    async def create(self, entry: FaqEntry, *, by: str = "") -> EntryRecord:
        """Add a new entry; EntryExists if its id is taken."""

        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> EntryRecord:
            if entry.id in current:
                raise EntryExists(f"An FAQ entry with id {entry.id!r} already exists.")
            return await self._put(pipe, entry.id, entry, None, by)

        return await self._transaction([entry.id], write)

    async def update(self, entry: FaqEntry, *, by: str = "") -> EntryRecord:
        """Change an existing entry; EntryNotFound if there is none with its id."""

        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> EntryRecord:
            if entry.id not in current:
                raise EntryNotFound(f"No FAQ entry with id {entry.id!r}.")
            return await self._put(pipe, entry.id, entry, current[entry.id], by)

        return await self._transaction([entry.id], write)

    async def upsert(self, entry: FaqEntry, *, by: str = "") -> EntryRecord:
        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> EntryRecord:
            return await self._put(pipe, entry.id, entry, current.get(entry.id), by)

        return await self._transaction([entry.id], write)

    async def add_phrasing(self, entry_id: str, text: str, *, by: str = "") -> EntryRecord:
        """Add `text` to an entry's alternative questions (a new version), unless it is one of its
        phrasings already; EntryNotFound if there is no such entry."""

        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> EntryRecord:
            record = current.get(entry_id)
            if record is None or record.entry is None:
                raise EntryNotFound(f"No FAQ entry with id {entry_id!r}.")
            entry = record.entry
            if text.strip() in entry.texts:
                return record
            phrased = replace(entry, alt_questions=(*entry.alt_questions, text.strip()))
            return await self._put(pipe, entry_id, phrased, record, by)

        return await self._transaction([entry_id], write)

    async def delete(self, entry_id: str, *, by: str = "") -> EntryRecord:
        """Remove an entry (its history stays, so it can be reverted); returns the deletion."""

        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> EntryRecord:
            if entry_id not in current:
                raise EntryNotFound(f"No FAQ entry with id {entry_id!r}.")
            return await self._put(pipe, entry_id, None, current[entry_id], by)

        return await self._transaction([entry_id], write)

    async def revert(self, entry_id: str, version: int, *, by: str = "") -> EntryRecord:
        """Make an earlier version current again, as a new version."""
        old = {r.version: r for r in await self.history(entry_id)}
        if version not in old:
            known = ", ".join(str(v) for v in sorted(old))
            raise EntryNotFound(f"Entry {entry_id!r} has no version {version} (it has {known}).")
        target = old[version].entry
        if target is None:
            raise KnowledgeError(
                f"Version {version} of {entry_id!r} is its deletion; revert to an earlier version."
            )

        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> EntryRecord:
            latest = max(old.values(), key=lambda r: r.version)
            previous = current.get(entry_id) or latest
            return await self._put(pipe, entry_id, target, previous, by, force=True)

        return await self._transaction([entry_id], write)

    async def import_entries(
        self,
        entries: list[FaqEntry],
        mode: Literal["merge", "replace"] = "merge",
        dry_run: bool = False,
        *,
        by: str = "",
    ) -> ImportResult:
        """Add and update `entries` in one transaction; `replace` also removes all others.

        Entries whose content is unchanged keep their version, so a re-import changes nothing.
        `dry_run` counts what would change and writes nothing.
        """
        ids = [e.id for e in entries]
        if len(set(ids)) != len(ids):
            raise KnowledgeError("Entry ids must be unique within one import.")

        async def write(pipe: Pipeline, current: dict[str, EntryRecord]) -> ImportResult:
            added = updated = unchanged = removed = 0
            changed: list[str] = []
            for entry in entries:
                old = current.get(entry.id)
                if old is not None and old.entry == entry:
                    unchanged += 1
                    continue
                added, updated = (added + 1, updated) if old is None else (added, updated + 1)
                self._stage(pipe, entry.id, entry, old, by)
                changed.append(entry.id)
            if mode == "replace":
                for gone in sorted(set(current) - set(ids)):
                    self._stage(pipe, gone, None, current[gone], by)
                    changed.append(gone)
                    removed += 1
            if dry_run:
                return ImportResult(added, updated, unchanged, removed, await self.version())
            version = await self._announce(pipe, changed)
            return ImportResult(added, updated, unchanged, removed, version)

        return await self._transaction(None, write)

    async def replace(self, entries: list[FaqEntry]) -> int:
        """Make `entries` the whole knowledge base in one transaction; returns the new version."""
        return (await self.import_entries(entries, "replace")).version

    # -- internals ----------------------------------------------------------------------------

    async def _transaction(self, ids: list[str] | None, write: Writer) -> Any:
        """Run `write` on a consistent view of the entries (`ids`, or all); retry on conflicts."""
        for _ in range(20):
            try:
                async with self._redis.pipeline(transaction=True) as pipe:
                    await pipe.watch(self.keys.entries)
                    if ids is None:
                        raw = dict(await pipe.hgetall(self.keys.entries))
                    else:
                        values = await pipe.hmget(self.keys.entries, ids)
                        raw = {i: v for i, v in zip(ids, values, strict=True) if v is not None}
                    current = {
                        (k.decode() if isinstance(k, bytes) else k): EntryRecord.from_json(v)
                        for k, v in raw.items()
                    }
                    pipe.multi()
                    return await write(pipe, current)
            except WatchError:
                continue
            except RedisError as exc:
                raise KnowledgeError(f"Cannot write to the knowledge base in Redis: {exc}") from exc
        raise KnowledgeError("The knowledge base is changing too fast to write to; try again.")

    async def _put(
        self,
        pipe: Pipeline,
        entry_id: str,
        entry: FaqEntry | None,
        old: EntryRecord | None,
        by: str,
        force: bool = False,
    ) -> EntryRecord:
        if not force and old is not None and old.entry == entry:
            return old  # nothing changed: no new version
        record = self._stage(pipe, entry_id, entry, old, by)
        await self._announce(pipe, [entry_id])
        return record

    def _stage(
        self,
        pipe: Pipeline,
        entry_id: str,
        entry: FaqEntry | None,
        old: EntryRecord | None,
        by: str,
    ) -> EntryRecord:
        now = time.time()
        record = EntryRecord(
            id=entry_id,
            version=1 if old is None else old.version + 1,
            created=now if old is None or old.deleted else old.created,
            updated=now,
            entry=entry,
            by=by,
        )
        data = record.to_json()
        if entry is None:
            pipe.hdel(self.keys.entries, entry_id)
        else:
            pipe.hset(self.keys.entries, entry_id, data)
        pipe.hset(self.keys.history(entry_id), str(record.version), data)
        return record

    async def _announce(self, pipe: Pipeline, changed: list[str]) -> int:
        """Bump the version, record the change and execute the transaction; the new version."""
        if not changed:
            return await self.version()
        at = len(pipe.command_stack)
        pipe.incr(self.keys.version)
        for entry_id in [WHOLE_KB] if len(changed) > _BULK else changed:
            pipe.xadd(self.keys.changes, {"id": entry_id}, maxlen=_CHANGES_KEPT, approximate=True)
        return int((await pipe.execute())[at])

    @staticmethod
    async def _read(call: Awaitable[Any]) -> Any:
        try:
            return await call
        except RedisError as exc:
            raise KnowledgeError(f"Cannot read the knowledge base from Redis: {exc}") from exc


def _stream_order(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)
