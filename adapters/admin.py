"""The operator API under /admin: conversations and their erasure, the figures, the sites and
the operators. Bearer-token auth. Handoff: adapters/handoff_api.py; the unanswered queue:
adapters/unanswered_api.py."""

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from adapters.admin_auth import operator_auth, owner_only
from adapters.file_responses import DOWNLOAD, FILE_ID, served
from adapters.operators import OperatorError, OperatorExists
from adapters.runtime import Runtime
from adapters.schemas import ErrorResponse, SessionId, SessionOut, Text
from bot import Figures

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (401, 403, 404, 409, 422, 503)
}


class SignedIn(BaseModel):
    operator: str | None = Field(
        description="The operator whose token this is; null for the owner's admin token."
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
