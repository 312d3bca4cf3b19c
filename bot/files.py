"""Photos and files a web chat's customer sends to the person they wait for or talk to (a picture
of the broken item, a screenshot of the error). Each is kept with the conversation: among its
keys, for its lifetime, and erased with it. Only the kinds operators can open safely are taken,
recognised by their first bytes rather than by what the browser claims.
"""

import time
import uuid
from contextlib import suppress
from dataclasses import dataclass

from redis.exceptions import RedisError

from bot.errors import ConversationError, StorageUnavailable
from bot.session_store import SessionStore

MAX_BYTES = 5 * 1024 * 1024
# All of one conversation's, the customer's and operators': Redis keeps them in memory, so a
# customer who sends file after file cannot fill it.
MAX_CONVERSATION_BYTES = 25 * 1024 * 1024
# First bytes -> media type (WebP: see `media_type`).
SIGNATURES = [
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
]
ACCEPTED = "PNG, JPEG, GIF or WebP images and PDF files"


class BadFile(ConversationError):
    """A file that is not taken (empty, too large, of another kind); the message says why."""


@dataclass(frozen=True)
class StoredFile:
    id: str
    name: str
    type: str  # its media type, from its content
    data: bytes

    @property
    def kind(self) -> str:
        """Whether it is an "image" or a "file", as the conversation says ("[image a.jpg]")."""
        return "image" if self.type.startswith("image/") else "file"


def media_type(data: bytes) -> str | None:
    """The media type of `data` by its first bytes, if it is a kind taken."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for start, kind in SIGNATURES if data.startswith(start)), None)


def told(stored: StoredFile, words: str = "") -> str:
    """How the conversation tells a photo or file sent with `words`: "[image label.png] words"."""
    return f"[{stored.kind} {stored.name}] {words.strip()}".strip()


def words_of(text: str) -> str:
    """The words sent with a photo or file, from how the conversation tells it (`told`)."""
    return text.partition("] ")[2] if text.startswith(("[image ", "[file ")) else text


class SessionFiles:
    def __init__(self, sessions: SessionStore) -> None:
        self._sessions = sessions

    async def put(self, session_id: str, name: str, data: bytes) -> StoredFile:
        """Keep `data` (named `name` by the customer) with the conversation."""
        if not data:
            raise BadFile("The file is empty.")
        if len(data) > MAX_BYTES:
            raise BadFile(
                f"The file is {len(data) / 1e6:.1f} MB; the limit is {MAX_BYTES / 1e6:.0f} MB."
            )
        kind = media_type(data)
        if kind is None:
            raise BadFile(f"This kind of file cannot be sent; send {ACCEPTED}.")
        # Brackets would end how the conversation tells it (`told`) early.
        plain = name.translate(str.maketrans("[]", "()"))
        shown = " ".join(plain.split())[:100] or f"{kind.split('/')[0]}"
        stored = StoredFile(uuid.uuid4().hex, shown, kind, data)
        await self._reserve(session_id, len(data))
        key = self._sessions.keys.file(session_id, stored.id)
        record = {"name": stored.name, "type": kind, "data": data, "ts": time.time()}
        try:
            await self._sessions.keep(key, record, "the file")
        except StorageUnavailable:
            with suppress(RedisError):
                await self._sessions.redis.decrby(self._size_key(session_id), len(data))
            raise
        return stored

    async def _reserve(self, session_id: str, size: int) -> None:
        """Count `size` more bytes against the conversation's share, or refuse them."""
        key = self._size_key(session_id)
        try:
            async with self._sessions.redis.pipeline(transaction=True) as pipe:
                pipe.incrby(key, size)
                pipe.expire(key, self._sessions.ttl_s)
                used, _ = await pipe.execute()
            if used > MAX_CONVERSATION_BYTES:
                await self._sessions.redis.decrby(key, size)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot store the file: {exc}") from exc
        if used > MAX_CONVERSATION_BYTES:
            raise BadFile(
                f"This conversation already holds {(used - size) / 2**20:.1f} MB of files; the "
                f"limit is {MAX_CONVERSATION_BYTES / 2**20:.0f} MB. Describe the rest in words, "
                "or send a link."
            )

    def _size_key(self, session_id: str) -> str:
        return self._sessions.keys.files_size(session_id)

    async def drop(self, session_id: str, file_id: str) -> None:
        key, redis = self._sessions.keys.file(session_id, file_id), self._sessions.redis
        try:
            size = await redis.hstrlen(key, "data")
            await redis.delete(key)
            if size:
                await redis.decrby(self._size_key(session_id), size)
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot drop the file: {exc}") from exc

    async def get(self, session_id: str, file_id: str) -> StoredFile | None:
        try:
            found = await self._sessions.redis.hgetall(
                self._sessions.keys.file(session_id, file_id)
            )
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the file: {exc}") from exc
        if not found:
            return None
        return StoredFile(file_id, found[b"name"].decode(), found[b"type"].decode(), found[b"data"])
