"""The operator API under /admin: human handoff, the unanswered queue, erasure, the figures and
the sites. Bearer-token auth."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from adapters.admin_auth import acting, operator_auth, owner_only, signed_in
from adapters.file_responses import DOWNLOAD, FILE_ID, UPLOAD, served
from adapters.operators import OperatorError, OperatorExists
from adapters.runtime import Runtime
from adapters.schemas import ErrorResponse, SessionId, SessionOut, Text
from bot import Figures
from knowledge import FaqEntry

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}
OPERATOR_NAMED = (
    "Who is acting: needed with the admin token; with an operator's own token it is that "
    "operator (and may be left out)."
)
Operator = Annotated[str | None, Field(min_length=1, max_length=64, description=OPERATOR_NAMED)]


class OperatorAction(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operator: Operator = None


class OperatorMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operator: Operator = None
    text: Text


class SignedIn(BaseModel):
    operator: str | None = Field(
        description="The operator whose token this is; null for the owner's admin token."
    )


class HandoffQueues(BaseModel):
    waiting: list[SessionOut] = Field(description="Waiting for a human, first come first.")
    active: list[SessionOut] = Field(description="Taken by an operator.")
    present: list[str] = Field(
        description=(
            "Operators (own tokens) whose desk, in use, listed these in the last 2 min, and "
            "those who said /here in the Telegram team chat."
        )
    )


class OutboxOut(BaseModel):
    id: str
    session_id: str
    text: str
    operator: str
    rating_id: str = Field(
        default="",
        description="When the conversation with `operator` ended: the customer rates their help "
        "by posting this as reply_id to /api/chat/{session}/feedback.",
    )
    attachment: str = Field(
        default="",
        description="A photo or file an operator sent from the Telegram team chat (its chat and "
        "message there), which the channel copies to the customer; `text` describes it.",
    )
    file: str = Field(
        default="",
        description="A photo or file for the customer, kept with the conversation "
        "(GET /admin/sessions/{session}/files/{file}); `text` describes it.",
    )
    typing: bool = Field(
        default=False,
        description="Not a message: `operator` is writing one (POST "
        "/admin/handoff/{session}/typing); the channel shows it for a few seconds.",
    )


class UnansweredOut(BaseModel):
    id: str
    reason: str = Field(description="fallback | thumbs_down")
    session_id: str
    question: str
    reply: str
    ts: float
    suggested: list[str] = Field(description="Ids of the FAQ entries the reply offered.")


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


class RecentSessionOut(SessionOut):
    last_message: float = Field(description="When the customer wrote last (Unix time).")


class ErasedOut(BaseModel):
    session_id: str
    messages: int = Field(description="Messages of the conversation (customer, bot, operators).")
    replies: int = Field(description="Records of its replies kept for feedback.")
    unanswered: int = Field(description="Its questions in the unanswered queue.")
    operator_messages: int = Field(description="Operator messages in the channels' outboxes.")
    files: int = Field(description="Photos and files the customer sent.")


class FiguresOut(BaseModel):
    conversations: int = Field(description="Distinct conversations with a message.")
    messages: int = Field(description="Customers' messages, every answer mode.")
    faq: int = Field(description="Answered with an FAQ entry's answer, word for word.")
    grounded: int = Field(description="Answered by the model from FAQ entries.")
    fallback: int = Field(description='"I don\'t know", with FAQ questions to pick from or not.')
    suggested: int = Field(description="Of the fallbacks, those offered FAQ questions.")
    smalltalk: int = Field(description="Greetings, thanks, goodbyes, /reset.")
    handoff: int = Field(description="Messages asking for a person or sent while with one.")
    handoffs: int = Field(description="Customers put in line for a person.")
    taken: int = Field(description="Customers an operator took.")
    waited_s: int = Field(description="How long those had waited for the operator, summed (s).")
    average_wait_s: float | None = Field(
        description="How long a customer an operator took had waited, on average (s); null "
        "when no one was taken."
    )
    thumbs_up: int
    thumbs_down: int
    operator_up: int = Field(description="Customers who rated an operator's help 👍.")
    operator_down: int = Field(description="Customers who rated an operator's help 👎.")
    answered: float | None = Field(
        description="Share of the questions for the FAQ (faq, grounded, fallback) answered; "
        "null when there were none."
    )

    @classmethod
    def of(cls, figures: Figures) -> "FiguresOut":
        return cls(
            **asdict(figures), answered=figures.answered, average_wait_s=figures.average_wait_s
        )


class DayOut(FiguresOut):
    day: str = Field(description="YYYY-MM-DD, in the figures' time zone.")


class TopEntry(BaseModel):
    id: str
    question: str | None = Field(description="null when the entry has been deleted since.")
    answers: int = Field(description="Answers given from it (faq and grounded replies).")


class OperatorOut(BaseModel):
    name: str = Field(description="What customers see.")
    created: float


class NewOperator(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Annotated[str, Field(min_length=1, max_length=64, description="What customers see.")]


class NewOperatorOut(BaseModel):
    name: str
    token: str = Field(description="Their token, shown this once: give it to them alone.")


class OperatorTaken(BaseModel):
    operator: str
    taken: int = Field(description="Customers they took in the range.")
    thumbs_up: int = Field(description="Customers who rated their help 👍 when it ended.")
    thumbs_down: int = Field(description="Customers who rated their help 👎.")


class StatsOut(BaseModel):
    time_zone: str = Field(description="Where the days begin and end (ANSWERDESK_TIME_ZONE).")
    days: list[DayOut] = Field(description="Every day of the range, oldest first.")
    total: FiguresOut = Field(description="The range; conversations counted once.")
    top_entries: list[TopEntry] = Field(description="The 10 entries most answered from.")
    operators: list[OperatorTaken] = Field(description="Who took the customers, most first.")


class NewSite(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text
    origins: list[str] = Field(description="e.g. https://shop.example (scheme, host, port)")
    title: str | None = None
    greeting: str | None = None
    colour: str | None = Field(default=None, description="#rgb or #rrggbb")
    language: str | None = None
    privacy_url: str | None = Field(
        default=None, description="The site's privacy notice, linked under the widget's input."
    )


class SiteFull(BaseModel):
    key: str
    name: str
    origins: list[str]
    title: str
    greeting: str
    colour: str
    language: str
    privacy_url: str
    demo: bool


def admin_router(token: str | None) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[operator_auth(token)], responses=ERRORS)

    def runtime(request: Request) -> Runtime:
        return request.app.state.runtime  # type: ignore[no-any-return]

    @router.get("/me", response_model=SignedIn)
    async def me(request: Request) -> SignedIn:
        """Who this token signs in: an operator, or the owner (the admin token)."""
        return SignedIn(operator=request.state.operator)

    @router.get("/handoff", response_model=HandoffQueues)
    async def queues(
        request: Request,
        present: Annotated[
            bool,
            Query(description="false: the desk lists them, but its operator has been idle."),
        ] = True,
    ) -> HandoffQueues:
        """Conversations waiting for a human and those operators have taken, with transcripts.
        Listing them (`present`) counts as an operator being there for the next 2 minutes: a
        customer who asks for a person while nobody has is told the answer may take a while."""
        desk = runtime(request).manager.handoff
        if present:
            await desk.watched(request.state.operator)
        return HandoffQueues(
            waiting=[SessionOut.of(s) for s in await desk.waiting()],
            active=[SessionOut.of(s) for s in await desk.active()],
            present=await desk.present(),
        )

    @router.get("/sessions", response_model=list[RecentSessionOut])
    async def recent(
        request: Request,
        count: Annotated[int, Query(ge=1, le=200)] = 20,
        before: Annotated[
            float | None,
            Query(gt=0, description="Only those whose customer wrote last before this time."),
        ] = None,
        contains: Annotated[
            str,
            Query(
                max_length=200,
                description="Only those in which every one of these words occurs (any case), "
                "or whose id begins with it; the latest 5,000 conversations are searched.",
            ),
        ] = "",
    ) -> list[RecentSessionOut]:
        """Conversations by their customer's last message, the latest first, with transcripts:
        what the assistant answered, to check and to improve the FAQ from, or to find the one a
        customer writes about (`contains`). The next page: `before` = the last one's
        `last_message`."""
        found = await runtime(request).manager.recent(count, before, contains)
        return [
            RecentSessionOut(**SessionOut.of(s).model_dump(), last_message=at) for s, at in found
        ]

    @router.get(
        "/sessions/{session_id}/files/{file_id}", response_class=Response, responses=DOWNLOAD
    )
    async def session_file(
        request: Request,
        session_id: Annotated[SessionId, Path()],
        file_id: Annotated[str, Path(pattern=FILE_ID)],
    ) -> Response:
        """A photo or file of the conversation (a turn's `file`: the customer's, or an
        operator's for them): an image to show, a PDF to download."""
        return served(await runtime(request).manager.files.get(session_id, file_id))

    @router.get("/sessions/{session_id}", response_model=SessionOut)
    async def session(request: Request, session_id: Annotated[SessionId, Path()]) -> SessionOut:
        info = await runtime(request).manager.session(session_id)
        if not info.created:
            raise HTTPException(404, f"No conversation with id {session_id}.")
        return SessionOut.of(info)

    @router.delete("/sessions/{session_id}", response_model=ErasedOut)
    async def erase(request: Request, session_id: Annotated[SessionId, Path()]) -> ErasedOut:
        """Erase a conversation on the customer's request: its messages, the records of its
        replies, its questions in the unanswered queue and operator messages to it. FAQ entries
        made from its questions stay."""
        erased = await runtime(request).manager.erase(session_id)
        if not erased.anything:
            raise HTTPException(404, f"No conversation with id {session_id}.")
        return ErasedOut(session_id=session_id, **asdict(erased))

    @router.post("/handoff/{session_id}/take", response_model=SessionOut)
    async def take(
        body: OperatorAction, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> SessionOut:
        """Take a waiting conversation: the bot goes quiet and the customer is told who joined."""
        desk = runtime(request).manager.handoff
        return SessionOut.of(await desk.take(session_id, acting(request, body.operator)))

    @router.post("/handoff/{session_id}/messages", response_model=OutboxOut)
    async def send(
        body: OperatorMessage, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> OutboxOut:
        """Write to the customer; the message goes out through the conversation's channel."""
        operator = acting(request, body.operator)
        sent = await runtime(request).manager.handoff.send(session_id, operator, body.text)
        return OutboxOut(**sent.__dict__)

    @router.post("/handoff/{session_id}/files", response_model=OutboxOut, openapi_extra=UPLOAD)
    async def send_file(
        request: Request,
        session_id: Annotated[SessionId, Path()],
        name: Annotated[str, Query(max_length=200, description="The file's name.")] = "",
        caption: Annotated[
            str, Query(max_length=1000, description="Words sent with it, if any.")
        ] = "",
        operator: Annotated[
            str | None, Query(min_length=1, max_length=64, description=OPERATOR_NAMED)
        ] = None,
    ) -> OutboxOut:
        """A photo or file for the customer (the request body: a PNG, JPEG, GIF or WebP image
        or a PDF, at most 5 MB), such as a return label or a screenshot of where to click. It is
        kept with the conversation like a customer's, erased with it, and goes out through its
        channel: shown in the web chat, sent as a photo or document in Telegram."""
        who = acting(request, operator)
        manager = runtime(request).manager
        data = await request.body()
        return OutboxOut(**(await manager.send_file(session_id, who, name, data, caption)).__dict__)

    @router.post("/handoff/{session_id}/typing", status_code=204)
    async def typing(
        body: OperatorAction, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> None:
        """The operator is writing to the customer (the desk says so every few seconds while
        they type): the web chat shows "Olga is typing…" for 6 s, Telegram "typing…" for 5 s."""
        operator = acting(request, body.operator)
        await runtime(request).manager.handoff.typing(session_id, operator)

    @router.post("/handoff/{session_id}/notes", response_model=SessionOut, status_code=201)
    async def note(
        body: OperatorMessage, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> SessionOut:
        """A note on the conversation for colleagues (what was checked, what was promised), in
        any state: kept in its history as a `note` turn, which the customer and the assistant
        never see."""
        operator = acting(request, body.operator)
        return SessionOut.of(
            await runtime(request).manager.handoff.note(session_id, operator, body.text)
        )

    @router.post("/handoff/{session_id}/release", response_model=SessionOut)
    async def release(
        body: OperatorAction, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> SessionOut:
        """Hand the conversation back to the assistant."""
        desk = runtime(request).manager.handoff
        return SessionOut.of(await desk.release(session_id, acting(request, body.operator)))

    @router.post("/handoff/{session_id}/pass", response_model=SessionOut)
    async def pass_on(
        body: OperatorAction, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> SessionOut:
        """Put the conversation back in line for a colleague, first (the customer is told, and
        the team chat too)."""
        operator = acting(request, body.operator)
        return SessionOut.of(await runtime(request).manager.pass_on(session_id, operator))

    @router.get("/outbox/{channel}", response_model=list[OutboxOut])
    async def outbox(
        request: Request,
        channel: Annotated[str, Path(pattern=r"^[a-z0-9_-]{1,32}$")],
        after: Annotated[str, Query(pattern=r"^\d{1,19}-\d{1,19}$")] = "0-0",
    ) -> list[OutboxOut]:
        """Operator messages for a channel's adapter, after the stream id `after`."""
        messages = await runtime(request).manager.handoff.outbox(channel, after)
        return [OutboxOut(**m.__dict__) for m in messages]

    @router.get("/unanswered", response_model=list[UnansweredOut])
    async def unanswered(
        request: Request, count: Annotated[int, Query(ge=1, le=1000)] = 100
    ) -> list[UnansweredOut]:
        """Questions the assistant could not answer and replies customers rated 👎."""
        items = await runtime(request).manager.feedback.unanswered(count)
        return [UnansweredOut(**i.__dict__) for i in items]

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

    @router.get("/stats", response_model=StatsOut)
    async def stats(request: Request, days: Annotated[int, Query(ge=1, le=366)] = 7) -> StatsOut:
        """How the assistant did over the last `days` days (today included; days of
        ANSWERDESK_TIME_ZONE, default UTC): customers' messages by answer mode, handoffs,
        ratings and the FAQ entries most answered from."""
        rt = runtime(request)
        report = await rt.manager.stats.report(days)
        top = report.entries[:10]
        records = await rt.knowledge.get_many([entry for entry, _ in top])
        return StatsOut(
            time_zone=rt.settings.time_zone,
            days=[DayOut(**FiguresOut.of(d.figures).model_dump(), day=d.day) for d in report.days],
            total=FiguresOut.of(report.total),
            top_entries=[
                TopEntry(
                    id=entry,
                    question=None
                    if (r := records[entry]) is None or r.entry is None
                    else r.entry.question,
                    answers=answers,
                )
                for entry, answers in top
            ],
            operators=[
                OperatorTaken(
                    operator=o,
                    taken=report.operators_taken.get(o, 0),
                    thumbs_up=report.ratings.get(o, (0, 0))[0],
                    thumbs_down=report.ratings.get(o, (0, 0))[1],
                )
                for o in report.operator_names
            ],
        )

    @router.get("/sites", response_model=list[SiteFull])
    async def sites(request: Request) -> list[SiteFull]:
        """Web sites that may embed the widget, with their keys and origins."""
        return [SiteFull(**asdict(s)) for s in await runtime(request).sites.all()]

    @router.post("/sites", response_model=SiteFull, status_code=201)
    async def add_site(body: NewSite, request: Request) -> SiteFull:
        """Register a site: it gets a public key for its widget; only its origins may use it.
        The owner's admin token only."""
        owner_only(request)
        style = body.model_dump(exclude={"name", "origins"}, exclude_none=True)
        site = await runtime(request).sites.add(body.name, body.origins, **style)
        return SiteFull(**asdict(site))

    @router.delete("/sites/{key}", status_code=204)
    async def remove_site(request: Request, key: Annotated[str, Path(max_length=64)]) -> None:
        """Remove a site; its widget stops working. The owner's admin token only."""
        owner_only(request)
        if not await runtime(request).sites.remove(key):
            raise HTTPException(404, f"No site with key {key}.")

    @router.get("/operators", response_model=list[OperatorOut])
    async def operators(request: Request) -> list[OperatorOut]:
        """The operator accounts (their tokens are not kept). The owner's admin token only."""
        owner_only(request)
        return [OperatorOut(**asdict(o)) for o in await runtime(request).operators.all()]

    @router.post("/operators", response_model=NewOperatorOut, status_code=201)
    async def add_operator(body: NewOperator, request: Request) -> NewOperatorOut:
        """Add an operator: the answer holds their token, this once (only its digest is kept).
        The owner's admin token only."""
        owner_only(request)
        accounts = runtime(request).operators
        try:
            token = await accounts.add(body.name)
        except OperatorError as exc:
            raise HTTPException(409 if isinstance(exc, OperatorExists) else 422, str(exc)) from exc
        return NewOperatorOut(name=body.name.strip(), token=token)

    @router.delete("/operators/{name}", status_code=204)
    async def remove_operator(
        request: Request, name: Annotated[str, Path(min_length=1, max_length=64)]
    ) -> None:
        """Remove an operator: their token stops working at once. The owner's admin token
        only."""
        owner_only(request)
        if not await runtime(request).operators.remove(name):
            raise HTTPException(404, f"No operator named {name!r}.")

    return router
