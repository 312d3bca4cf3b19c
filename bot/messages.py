"""What flows into and out of the conversation core. Channel-free plain dataclasses."""

from dataclasses import dataclass, field
from typing import Literal

Mode = Literal["faq", "grounded", "fallback", "smalltalk", "handoff"]
State = Literal["bot", "pending_human", "human"]
# "note": an operator's note on the conversation, for colleagues; customers and the model never
# see it.
Role = Literal["user", "assistant", "operator", "system", "note"]


@dataclass(frozen=True)
class Inbound:
    """One customer message as a channel received it."""

    session_id: str
    text: str
    channel: str = "web"
    user_id: str | None = None  # rate limits count per user; default: per session
    message_id: str | None = None  # the channel's id: a redelivery is processed once
    language: str | None = None
    page: str | None = None  # the web page the customer writes from (its address, no query)
    # What the customer sent besides words, for operators ("photo", "file invoice.pdf"); `text`
    # then describes it. Telegram keeps it (`message_id` locates it); a web chat's is kept here,
    # with the conversation, under the id `file` (`bot.files`).
    attachment: str = ""
    file: str = ""


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
    """The final event of a turn; its text is the authoritative reply.

    An empty text means the bot stays quiet (a human operator has the conversation).
    """

    session_id: str
    text: str
    mode: Mode
    sources: tuple[Source, ...] = ()
    reply_id: str = ""
    confidence: float = 0.0  # the best retrieval score, 0 when nothing was retrieved
    state: State = "bot"
    # FAQ entries the customer may have meant, offered when none answers the question well enough
    suggestions: tuple[Source, ...] = ()


ReplyEvent = ReplyChunk | Reply


@dataclass(frozen=True)
class Turn:
    """One stored message of a conversation."""

    role: Role
    text: str
    ts: float
    mode: Mode | None = None
    sources: tuple[Source, ...] = ()
    reply_id: str | None = None
    operator: str | None = None
    suggestions: tuple[Source, ...] = ()  # FAQ questions the reply offered (see `Reply`)
    file: str | None = None  # a photo or file the customer sent with it (`bot.files`)


@dataclass(frozen=True)
class SessionInfo:
    session_id: str
    channel: str = "web"
    created: float = 0.0
    last_seen: float = 0.0
    state: State = "bot"
    state_since: float = 0.0
    operator: str | None = None
    fallbacks: int = 0  # consecutive fallback replies
    site: str | None = None  # the web site (site key) a widget conversation belongs to
    page: str | None = None  # the web page its customer last wrote from
    email: str | None = None  # the address its customer left to be written to
    turns: list[Turn] = field(default_factory=list)
