"""Every Redis key of a conversation, in one place. `{session}` hash tags keep one session's keys
on one Redis Cluster slot."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SessionKeys:
    prefix: str = "answerdesk"

    def history(self, session_id: str) -> str:
        return f"{self.prefix}:session:{{{session_id}}}:history"

    def lock(self, session_id: str) -> str:
        return f"{self.prefix}:session:{{{session_id}}}:lock"
