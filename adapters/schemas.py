"""Wire models of the web API. They stay here; the core speaks its own dataclasses."""

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from bot import Reply, Turn

SessionId = Annotated[
    str,
    StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9_.:-]+$"),
    Field(description="Your id for the conversation: 1-128 letters, digits or _.:-"),
]


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    session_id: SessionId
    message: Annotated[
        str,
        StringConstraints(strip_whitespace=True, min_length=1),
        Field(description="The customer's message (at most ANSWERDESK_MAX_MESSAGE_CHARS, 4000)."),
    ]


class SourceOut(BaseModel):
    id: str
    question: str
    score: float


class ChatResponse(BaseModel):
    reply: str
    mode: str = Field(description="faq | grounded | fallback")
    sources: list[SourceOut]
    session_id: str

    @classmethod
    def of(cls, reply: Reply) -> "ChatResponse":
        return cls(
            reply=reply.text,
            mode=reply.mode,
            sources=[SourceOut(id=s.id, question=s.question, score=s.score) for s in reply.sources],
            session_id=reply.session_id,
        )


class TurnOut(BaseModel):
    role: str
    text: str
    ts: float
    mode: str | None = None
    sources: list[SourceOut] = []

    @classmethod
    def of(cls, turn: Turn) -> "TurnOut":
        return cls(
            role=turn.role,
            text=turn.text,
            ts=turn.ts,
            mode=turn.mode,
            sources=[SourceOut(id=s.id, question=s.question, score=s.score) for s in turn.sources],
        )


class HistoryResponse(BaseModel):
    session_id: str
    turns: list[TurnOut]


class ErrorResponse(BaseModel):
    error: str
