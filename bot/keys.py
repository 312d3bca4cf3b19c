"""Every Redis key of the conversation core, in one place.

A session's keys carry the `{session}` hash tag, so one session lives on one Redis Cluster slot
and its MULTI/EXEC transactions work there too.
"""

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class SessionKeys:
    prefix: str = "answerdesk"

    def _session(self, session_id: str, what: str) -> str:
        return f"{self.prefix}:session:{{{session_id}}}:{what}"

    def history(self, session_id: str) -> str:
        """List of turn JSON, oldest first, capped."""
        return self._session(session_id, "history")

    def meta(self, session_id: str) -> str:
        """Hash: channel, created, last_seen, state, state_since, operator, fallbacks, site, page;
        email (the customer's address), shown_at, emailed_until (`bot.follow_ups`)."""
        return self._session(session_id, "meta")

    def session_keys(self, session_id: str) -> str:
        """SCAN pattern of every key of the session (history, meta, lock, replies)."""
        return _literal(self._session(session_id, "")) + "*"

    def lock(self, session_id: str) -> str:
        return self._session(session_id, "lock")

    def reminded(self, session_id: str) -> str:
        """Set once the operators were reminded of the session's wait for a person."""
        return self._session(session_id, "reminded")

    def customer_typing(self, session_id: str) -> str:
        """String with a short TTL: when the customer last typed, while a person has the
        conversation (`HandoffDesk.customer_typing`)."""
        return self._session(session_id, "customer_typing")

    def mailing(self, session_id: str) -> str:
        """Set while a worker writes the e-mail of the session's unseen operator messages."""
        return self._session(session_id, "mailing")

    @property
    def follow_ups(self) -> str:
        """Sorted set: web chat sessions with operator messages to e-mail, by when it is due."""
        return f"{self.prefix}:follow_ups"

    def file(self, session_id: str, file_id: str) -> str:
        """Hash: a photo or file the customer sent to a person (name, type, data)."""
        return self._session(session_id, f"file:{file_id}")

    def files_size(self, session_id: str) -> str:
        """Integer: the bytes of the photos and files kept with the session (`file`)."""
        return self._session(session_id, "files_size")

    def reply(self, session_id: str, reply_id: str) -> str:
        """Hash: what was asked and answered, kept for feedback."""
        return self._session(session_id, f"reply:{reply_id}")

    @property
    def recent(self) -> str:
        """Sorted set: session ids by the time of their customer's last message."""
        return f"{self.prefix}:sessions:recent"

    def delivery(self, channel: str, message_id: str) -> str:
        """Claimed once per channel message id: redeliveries are dropped."""
        return f"{self.prefix}:delivery:{channel}:{message_id}"

    def rate_limit(self) -> str:
        """Prefix of the rate limiter's own keys."""
        return f"{self.prefix}:ratelimit"

    @property
    def waiting(self) -> str:
        """Sorted set: sessions waiting for a human, by the time they asked."""
        return f"{self.prefix}:handoff:waiting"

    @property
    def present(self) -> str:
        """Sorted set: operator name -> when their desk, in use, last listed the queue."""
        return f"{self.prefix}:handoff:present"

    @property
    def on_duty(self) -> str:
        """Sorted set: operator name -> until when they said they are here (in the Telegram
        team chat, `/here`), whether or not a desk of theirs is open."""
        return f"{self.prefix}:handoff:on_duty"

    @property
    def watched(self) -> str:
        """String with a TTL, set while someone watches the handoff queue (the operator desk)."""
        return f"{self.prefix}:handoff:watched"

    @property
    def active(self) -> str:
        """Set: sessions a human operator has taken."""
        return f"{self.prefix}:handoff:active"

    def outbox(self, channel: str) -> str:
        """Stream per channel: operator messages for the channel's adapter to deliver."""
        return f"{self.prefix}:outbox:{channel}"

    @property
    def outboxes(self) -> str:
        """SCAN pattern of every channel's outbox."""
        return _literal(self.outbox("")) + "*"

    def stats(self, day: str) -> str:
        """Hash per day: customers' messages by answer mode, handoffs, ratings. Every
        figures key has the `{stats}` hash tag: a range's conversations are counted in one
        PFCOUNT, which needs its keys on one Redis Cluster slot."""
        return f"{self.prefix}:{{stats}}:{day}"

    def stats_entries(self, day: str) -> str:
        """Hash per day: FAQ entry id -> answers given from it."""
        return f"{self.stats(day)}:entries"

    def stats_operators(self, day: str) -> str:
        """Operator name -> customers they took that day."""
        return f"{self.stats(day)}:operators"

    def stats_operator_ratings(self, day: str, rating: str) -> str:
        """Operator name -> customers who rated their help `rating` (up, down) that day."""
        return f"{self.stats(day)}:operators:{rating}"

    def stats_sessions(self, day: str) -> str:
        """HyperLogLog per day: the conversations with a message."""
        return f"{self.stats(day)}:sessions"

    @property
    def saved_replies(self) -> str:
        """Hash: title -> JSON of an operators' saved reply (text, by, updated)."""
        return f"{self.prefix}:saved_replies"

    @property
    def unanswered(self) -> str:
        """Stream: questions the bot could not answer and replies customers disliked."""
        return f"{self.prefix}:unanswered"


def _literal(text: str) -> str:
    """`text` matched literally in a Redis SCAN pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
