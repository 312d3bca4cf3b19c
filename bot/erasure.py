"""Erasing a conversation on request: everything answerdesk keeps of it, wherever it is.

A customer's words are kept in the session's history and metadata, in the records of its
replies (for 👍/👎) and in the photos and files they sent, which expire with the session, and in
the operators' unanswered queue and the channels' outboxes of operator messages, which keep an
entry up to a session's lifetime after it was written (`SessionStore.drop_expired`), so beyond
the session's end. A customer who asks to have a conversation deleted, as the GDPR's right to
erasure lets them, expects all of it gone.
Erasing holds the session's lock, so a turn under way finishes first and nothing of it is written
back afterwards; the deletions are not one transaction (the queues are other keys than the
session's, on another Redis Cluster slot), and erasing again finishes an erase cut short. What
operators made of a question (an FAQ entry, another phrasing of one) belongs to the FAQ and
stays.
"""

from dataclasses import dataclass

from redis.exceptions import RedisError

from bot.errors import StorageUnavailable
from bot.session_store import SessionStore

PAGE = 1000  # stream entries read at a time


@dataclass(frozen=True)
class Erased:
    """How much of a conversation was erased."""

    messages: int  # turns of the history: the customer's, the assistant's and operators'
    replies: int  # reply records kept for feedback
    unanswered: int  # entries of the operators' unanswered queue
    operator_messages: int  # entries of the channels' outboxes
    files: int = 0  # photos and files the customer sent (`bot.files`)

    @property
    def anything(self) -> bool:
        counts = (self.messages, self.replies, self.unanswered, self.operator_messages, self.files)
        return any(counts)


async def erase_session(sessions: SessionStore, session_id: str) -> Erased:
    """Delete everything kept of `session_id`: its keys, its place in the handoff queues, and its
    entries in the unanswered queue and the outboxes. Holds the session's lock meanwhile."""
    keys, redis = sessions.keys, sessions.redis
    try:
        async with sessions.locked(session_id):
            messages = await redis.llen(keys.history(session_id))
            # Every key of the session (history, metadata, reply records) but its lock, held here.
            lock, reply, file = (
                keys.lock(session_id),
                keys.reply(session_id, ""),
                keys.file(session_id, ""),
            )
            found = redis.scan_iter(match=keys.session_keys(session_id), count=PAGE)
            own = [k.decode() async for k in found if k.decode() != lock]
            replies = [k for k in own if k.startswith(reply)]
            files = [k for k in own if k.startswith(file)]
            unanswered = await _stream_entries(sessions, keys.unanswered, session_id)
            outboxes = {
                stream.decode(): await _stream_entries(sessions, stream.decode(), session_id)
                async for stream in redis.scan_iter(match=keys.outboxes, count=PAGE, _type="stream")
            }
            async with redis.pipeline(transaction=False) as pipe:
                if own:
                    pipe.delete(*own)
                pipe.zrem(keys.waiting, session_id)
                pipe.zrem(keys.recent, session_id)
                pipe.zrem(keys.follow_ups, session_id)
                pipe.srem(keys.active, session_id)
                if unanswered:
                    pipe.xdel(keys.unanswered, *unanswered)
                for stream, ids in outboxes.items():
                    if ids:
                        pipe.xdel(stream, *ids)
                await pipe.execute()
    except RedisError as exc:
        raise StorageUnavailable(f"Cannot erase the conversation: {exc}") from exc
    return Erased(
        messages=messages,
        replies=len(replies),
        unanswered=len(unanswered),
        operator_messages=sum(map(len, outboxes.values())),
        files=len(files),
    )


async def _stream_entries(sessions: SessionStore, stream: str, session_id: str) -> list[bytes]:
    """Ids of the entries of `stream` whose `session_id` field is `session_id`."""
    found: list[bytes] = []
    start = "-"
    wanted = session_id.encode()
    while True:
        rows = await sessions.redis.xrange(stream, start, "+", PAGE)
        found += [rid for rid, fields in rows if fields.get(b"session_id") == wanted]
        if len(rows) < PAGE:
            return found
        start = "(" + rows[-1][0].decode()  # after the last one read
