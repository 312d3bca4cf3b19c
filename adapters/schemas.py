"""Wire models of the web and operator APIs. They stay here; the core speaks its own dataclasses."""

from typing import Annotated, Literal
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from bot import Reply, SessionInfo, Source, Turn

SessionId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
    Field(description="Your id for the conversation: 1-128 letters, digits or _.:-"),
]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: SessionId
    message: Annotated[
        Text, Field(description="The customer's message (at most ANSWERDESK_MAX_MESSAGE_CHARS).")
    ]
    message_id: Annotated[
        str | None,
        Field(max_length=128, description="Your id for this message: a resend is answered once."),
    ] = None
    page: Annotated[
        str | None,
        Field(
            max_length=2000,
            description=(
                "The address of the web page the customer writes from (http or https), shown to "
                "operators; its query and fragment are dropped."
            ),
        ),
    ] = None

    @field_validator("page")
    @classmethod
    def _page_address(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("page must be a web page's http:// or https:// address")
        return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


class SourceOut(BaseModel):
    id: str
    question: str
    score: float


def sources_out(sources: tuple[Source, ...]) -> list[SourceOut]:
    return [SourceOut(id=s.id, question=s.question, score=s.score) for s in sources]


class ChatResponse(BaseModel):
    reply: str = Field(description="Empty while a human operator has the conversation.")
    mode: str = Field(description="faq | grounded | fallback | smalltalk | handoff")
    sources: list[SourceOut]
    session_id: str
    reply_id: str = Field(description="Refer to this reply in feedback; empty when none.")
    confidence: float = Field(description="The best FAQ match score, 0 when none.")
    state: str = Field(description="bot | pending_human | human")
    suggestions: list[SourceOut] = Field(
        default=[],
        description="FAQ questions the customer may have meant, offered (mode fallback) when "
        "none answers well enough: send one's question as the next message for its answer.",
    )

    @classmethod
    def of(cls, reply: Reply) -> "ChatResponse":
        return cls(
            reply=reply.text,
            mode=reply.mode,
            sources=sources_out(reply.sources),
            session_id=reply.session_id,
            reply_id=reply.reply_id,
            confidence=reply.confidence,
            state=reply.state,
            suggestions=sources_out(reply.suggestions),
        )


class FeedbackRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reply_id: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    rating: Literal["up", "down"]


class TurnOut(BaseModel):
    role: str = Field(
        description="user | assistant | operator | system | note (an operator's note for "
        "colleagues: only the operator API has these)"
    )
    text: str
    ts: float
    mode: str | None = None
    sources: list[SourceOut] = []
    reply_id: str | None = None
    operator: str | None = None
    suggestions: list[SourceOut] = Field(
        default=[], description="FAQ questions the reply offered (see ChatResponse)."
    )
    file: str | None = Field(
        default=None,
        description="A photo or file sent with the message, by the customer (POST "
        "/api/chat/{session}/files) or by an operator: at GET /api/chat/{session}/files/{file} "
        "(the customer) and GET /admin/sessions/{session}/files/{file} (operators).",
    )

    @classmethod
    def of(cls, turn: Turn) -> "TurnOut":
        return cls(
            role=turn.role,
            text=turn.text,
            ts=turn.ts,
            mode=turn.mode,
            sources=sources_out(turn.sources),
            reply_id=turn.reply_id,
            operator=turn.operator,
            suggestions=sources_out(turn.suggestions),
            file=turn.file,
        )


class HistoryResponse(BaseModel):
    session_id: str
    turns: list[TurnOut]
    events_after: str = Field(
        default="0-0",
        description="Where GET /api/chat/{session}/events should start (its `after`) to bring "
        "the operator messages this history does not have, and none it has.",
    )


class SessionOut(BaseModel):
    session_id: str
    channel: str
    created: float
    last_seen: float
    state: str
    state_since: float
    operator: str | None
    site: str | None = Field(description="The key of the web site it came from (web chats).")
    page: str | None = Field(
        default=None, description="The web page its customer last wrote from (web chats)."
    )
    email: str | None = Field(
        default=None,
        description="The address its customer left to be written to (web chats, while waiting "
        "for a person).",
    )
    turns: list[TurnOut]
    customer_typing: bool = Field(
        default=False,
        description="Its customer is typing a message to the operator now (web chats; in the "
        "handoff lists).",
    )

    @classmethod
    def of(cls, info: SessionInfo, customer_typing: bool = False) -> "SessionOut":
        return cls(
            session_id=info.session_id,
            channel=info.channel,
            created=info.created,
            last_seen=info.last_seen,
            state=info.state,
            state_since=info.state_since,
            operator=info.operator,
            site=info.site,
            page=info.page,
            email=info.email,
            turns=[TurnOut.of(t) for t in info.turns],
            customer_typing=customer_typing,
        )


class ErrorResponse(BaseModel):
    error: str
