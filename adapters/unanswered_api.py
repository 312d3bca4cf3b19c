"""The operator API for the unanswered queue under /admin: questions the assistant could not
answer and replies customers rated 👎, listed as they came or by topic, answered with a new FAQ
entry, filed under the entry they meant, or dismissed. Bearer-token auth, as the rest of the
operator API (adapters/admin.py)."""

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from adapters.admin import ERRORS
from adapters.admin_auth import operator_auth, signed_in
from adapters.runtime import Runtime
from adapters.schemas import Text
from knowledge import FaqEntry


class UnansweredOut(BaseModel):
    id: str
    reason: str = Field(description="fallback | thumbs_down")
    session_id: str
    question: str
    reply: str
    ts: float
    suggested: list[str] = Field(description="Ids of the FAQ entries the reply offered.")


class TopicOut(BaseModel):
    question: str = Field(description="How it was first asked.")
    asked: int = Field(description="How many of the listed questions are about it.")
    last_asked: float
    items: list[UnansweredOut] = Field(description="Its questions, the first asked first.")


class Alias(BaseModel):
    model_config = ConfigDict(extra="forbid")
    entry_id: Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s/]+$")]


class NewFaqEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")
    answer: Text
    question: Text | None = Field(default=None, description="Default: the customer's words.")
    id: str | None = Field(default=None, description="Default: made from the question.")


class FaqEntryOut(BaseModel):
    id: str
    question: str
    answer: str
    alt_questions: list[str]

    @classmethod
    def of(cls, entry: FaqEntry) -> "FaqEntryOut":
        return cls(
            id=entry.id,
            question=entry.question,
            answer=entry.answer,
            alt_questions=list(entry.alt_questions),
        )


class ResolvedOut(FaqEntryOut):
    resolved: list[str] = Field(
        description="Other queued questions the entry now answers, dropped from the queue."
    )


def unanswered_router(token: str | None) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[operator_auth(token)], responses=ERRORS)

    def runtime(request: Request) -> Runtime:
        return request.app.state.runtime  # type: ignore[no-any-return]

    @router.get("/unanswered", response_model=list[UnansweredOut])
    async def unanswered(
        request: Request, count: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[UnansweredOut]:
        """Questions the assistant could not answer and replies customers rated 👎."""
        items = await runtime(request).manager.feedback.unanswered(count)
        return [UnansweredOut(**i.__dict__) for i in items]

    @router.get("/unanswered/topics", response_model=list[TopicOut])
    async def unanswered_topics(
        request: Request, count: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[TopicOut]:
        """The oldest `count` questions of the unanswered queue by topic (questions asked in
        other words about the same thing together, by their embeddings): the topics asked most
        first, then the latest asked. The FAQ gap most customers ran into comes first."""
        topics = await runtime(request).manager.unanswered_topics.topics(count)
        return [
            TopicOut(
                question=topic.items[0].question,
                asked=len(topic.items),
                last_asked=topic.last_asked,
                items=[UnansweredOut(**i.__dict__) for i in topic.items],
            )
            for topic in topics
        ]

    @router.post("/unanswered/{item_id}/faq", response_model=ResolvedOut, status_code=201)
    async def answer(
        body: NewFaqEntry,
        request: Request,
        item_id: Annotated[str, Path(pattern=r"^\d{1,19}-\d{1,19}$")],
    ) -> ResolvedOut:
        """Answer an unanswered question with a new FAQ entry, live at once. Other queued
        questions the entry now answers leave the queue too (`resolved`)."""
        rt = runtime(request)
        entry = await rt.manager.feedback.answer(
            item_id,
            body.answer,
            rt.knowledge,
            question=body.question,
            entry_id=body.id,
            by=signed_in(request),
        )
        resolved = await rt.manager.resolve_unanswered(entry.id)
        return ResolvedOut(**FaqEntryOut.of(entry).model_dump(), resolved=resolved)

    @router.post("/unanswered/{item_id}/alias", response_model=ResolvedOut)
    async def alias(
        body: Alias,
        request: Request,
        item_id: Annotated[str, Path(pattern=r"^\d{1,19}-\d{1,19}$")],
    ) -> ResolvedOut:
        """The customer meant an existing FAQ entry: add their question to its phrasings, live
        at once, so the next customer asking so is answered. Other queued questions the entry
        now answers leave the queue too (`resolved`)."""
        rt = runtime(request)
        by = signed_in(request)
        entry = await rt.manager.feedback.alias(item_id, body.entry_id, rt.knowledge, by)
        resolved = await rt.manager.resolve_unanswered(entry.id)
        return ResolvedOut(**FaqEntryOut.of(entry).model_dump(), resolved=resolved)

    @router.delete("/unanswered/{item_id}", status_code=204)
    async def dismiss(
        request: Request, item_id: Annotated[str, Path(pattern=r"^\d{1,19}-\d{1,19}$")]
    ) -> None:
        """Drop a question from the queue without answering it (off-topic, spam, a test)."""
        await runtime(request).manager.feedback.dismiss(item_id)

    return router
