"""What flows into and out of the conversation core. Channel-free plain dataclasses."""

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["faq", "grounded", "fallback"]


@dataclass(frozen=True)
class Inbound:
    session_id: str
    text: str
    channel: str = "web"


@dataclass(frozen=True)
class Source:
    id: str
    question: str
    score: float


@dataclass(frozen=True)
class ReplyChunk:
    """A piece of a generated reply, for channels that stream."""

    text: str


@dataclass(frozen=True)
class Reply:
    """The final event of a turn; its text is the authoritative reply."""

    session_id: str
    text: str
    mode: Mode
    sources: tuple[Source, ...] = field(default_factory=tuple)


ReplyEvent = ReplyChunk | Reply


@dataclass(frozen=True)
class Turn:
    """One stored message of a conversation."""

    role: Literal["user", "assistant"]
    text: str
    ts: float
    mode: Mode | None = None
    sources: tuple[Source, ...] = ()
