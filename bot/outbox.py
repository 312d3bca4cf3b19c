"""Operator messages on their way to customers: a Redis stream per channel, appended to by the
handoff desk (`bot.handoff`), trimmed to what is younger than a session lives. A channel reads
it in one of two ways: as a listener that sees every message (the web chat's event streams, one
per customer, each picking their own), or as a worker in the channel's consumer group, which
gets each message once and confirms it once delivered (Telegram's sender)."""

from contextlib import suppress
from dataclasses import dataclass

from redis.exceptions import RedisError, ResponseError

from bot.errors import StorageUnavailable
from bot.messages import SessionInfo
from bot.session_store import SessionStore

GROUP = "delivery"  # each channel's workers


@dataclass(frozen=True)
class OutboxMessage:
    id: str
    session_id: str
    text: str
    operator: str
    rating_id: str = ""  # the customer may rate `operator`'s help with this reply id
    # A photo or file of the operator's for the channel to pass on, where the channel keeps it
    # (Telegram: "chat:message" in the team chat); `text` then describes it.
    attachment: str = ""
    # A photo or file kept with the conversation (`bot.files`) for any channel to deliver.
    file: str = ""
    # Not a message: `operator` is writing one (`HandoffDesk.typing`).
    typing: bool = False

    @property
    def written_at(self) -> float:
        """When it was put on the outbox (the milliseconds of its stream id), in seconds."""
        return int(self.id.partition("-")[0]) / 1000


class Outbox:
    def __init__(self, sessions: SessionStore) -> None:
        self._sessions = sessions
        self._keys = sessions.keys
        self._redis = sessions.redis

    async def put(
        self,
        info: SessionInfo,
        text: str,
        operator: str,
        rating_id: str = "",
        attachment: str = "",
        file: str = "",
        typing: bool = False,
    ) -> OutboxMessage:
        """A message (or a sign of one, `typing`) for the customer of `info`, from `operator`."""
        given = {
            "rating_id": rating_id,
            "attachment": attachment,
            "file": file,
            "typing": "1" if typing else "",
        }
        fields = {"session_id": info.session_id, "text": text, "operator": operator}
        fields.update({name: value for name, value in given.items() if value})
        stream = self._keys.outbox(info.channel)
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.xadd(stream, fields, maxlen=100_000, approximate=True)
                self._sessions.drop_expired(pipe, stream)
                rid, _ = await pipe.execute()
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot write to the outbox: {exc}") from exc
        return OutboxMessage(
            rid.decode(), info.session_id, text, operator, rating_id, attachment, file, typing
        )

    async def read(
        self, channel: str, after: str = "0-0", count: int = 100, block_ms: int | None = None
    ) -> list[OutboxMessage]:
        """Operator messages for `channel` after the stream id `after` ("$": only new ones),
        oldest first; with `block_ms`, waits that long for one to arrive."""
        stream = self._keys.outbox(channel)
        try:
            if block_ms is None:
                rows = await self._redis.xrange(stream, f"({after}", "+", count)
            else:
                found = await self._redis.xread({stream: after}, count=count, block=block_ms)
                rows = [row for _, entries in found or [] for row in entries]
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the outbox: {exc}") from exc
        return [_outbox(rid, fields) for rid, fields in rows]

    async def last_id(self, channel: str) -> str:
        """The id of the channel's latest message ("0-0": none): `read` after it brings only
        newer ones."""
        try:
            rows = await self._redis.xrevrange(self._keys.outbox(channel), "+", "-", 1)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the outbox: {exc}") from exc
        return rows[0][0].decode() if rows else "0-0"

    async def deliveries(
        self,
        channel: str,
        consumer: str,
        block_ms: int = 5000,
        count: int = 50,
        unconfirmed: bool = False,
    ) -> list[OutboxMessage]:
        """Operator messages for `channel` not yet delivered by any of its workers (a consumer
        group per channel, so each message goes to one worker). Confirm each with `delivered`.
        `unconfirmed`: instead, those `consumer` was given and has not confirmed (it failed
        midway), at once."""
        stream = await self._group(channel)
        after = "0" if unconfirmed else ">"
        try:
            rows = await self._redis.xreadgroup(
                GROUP,
                consumer,
                {stream: after},
                count=count,
                block=None if unconfirmed else block_ms,
            )
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the outbox: {exc}") from exc
        return [_outbox(rid, fields) for _, entries in rows for rid, fields in entries]

    async def abandoned(
        self, channel: str, consumer: str, idle_ms: int = 60_000, count: int = 50
    ) -> list[OutboxMessage]:
        """Operator messages other workers of `channel` were given and have not confirmed for
        `idle_ms` (they stopped midway: a restart, a crash), now `consumer`'s to deliver and
        confirm."""
        stream = await self._group(channel)
        try:
            _, rows, *_ = await self._redis.xautoclaim(
                stream, GROUP, consumer, idle_ms, "0-0", count=count
            )
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the outbox: {exc}") from exc
        # An entry deleted meanwhile (its conversation was erased) comes without its fields.
        return [_outbox(rid, fields) for rid, fields in rows if rid and fields]

    async def _group(self, channel: str) -> str:
        """The channel's stream, with its consumer group of workers."""
        stream = self._keys.outbox(channel)
        try:
            with suppress(ResponseError):  # BUSYGROUP: the group exists already
                await self._redis.xgroup_create(stream, GROUP, id="0", mkstream=True)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the outbox: {exc}") from exc
        return stream

    async def delivered(self, channel: str, message_id: str) -> None:
        try:
            await self._redis.xack(self._keys.outbox(channel), GROUP, message_id)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot confirm the delivery: {exc}") from exc


def _outbox(rid: bytes, fields: dict[bytes, bytes]) -> OutboxMessage:
    return OutboxMessage(
        id=rid.decode(),
        session_id=fields[b"session_id"].decode(),
        text=fields[b"text"].decode(),
        operator=fields[b"operator"].decode(),
        rating_id=fields.get(b"rating_id", b"").decode(),
        attachment=fields.get(b"attachment", b"").decode(),
        file=fields.get(b"file", b"").decode(),
        typing=fields.get(b"typing") == b"1",
    )
