"""The chat API for the widget and for sites' own code: sessions, questions (JSON or streamed as
Server-Sent Events), history, feedback and operator messages. Every call names its site."""

import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Query, Request, Response
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import BaseModel, Field

from adapters.errors import status_of
from adapters.file_responses import DOWNLOAD, FILE_ID, UPLOAD, served
from adapters.runtime import Runtime
from adapters.schemas import (
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    FeedbackRequest,
    HistoryResponse,
    SessionId,
    TurnOut,
)
from adapters.sites import Site
from bot import ConversationError, Inbound, Reply, ReplyChunk, StorageUnavailable

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (403, 404, 409, 422, 429, 503)
}


class SiteOut(BaseModel):
    title: str
    greeting: str
    colour: str
    language: str
    privacy_url: str = Field(description="The site's privacy notice; empty: none.")


class TeamOut(BaseModel):
    here: bool = Field(description="Someone from the team is at the operator desk now.")
    back: str | None = Field(
        description='Away, outside its hours: when it is back ("tomorrow at 09:00 (Europe/Berlin '
        'time)"); null otherwise.'
    )
    usual_wait_s: float | None = Field(
        description="Here: how long customers who asked for a person lately waited, on "
        "average (s); null when not known."
    )


class SessionCreated(BaseModel):
    session_id: str
    site: SiteOut


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime  # type: ignore[no-any-return]


async def current_site(
    request: Request,
    x_site_key: Annotated[str | None, Header(description="The site's public key.")] = None,
    site_key: Annotated[str | None, Query(description="Or the key as a parameter.")] = None,
) -> Site:
    """The site a call comes from: its key must be registered, and a browser's Origin must be
    one of the site's origins. Without a key, the demo site (when enabled) is meant."""
    runtime = runtime_of(request)
    key = x_site_key or site_key or runtime.settings.demo_site_key
    site = await runtime.sites.get(key) if key else None
    if site is None:
        raise HTTPException(403, "Unknown site key: register the site with `answerdesk sites add`.")
    origin = request.headers.get("origin")
    if not site.allows(origin):
        raise HTTPException(403, f"Origin {origin} is not allowed to use this site key.")
    return site


CurrentSite = Annotated[Site, Depends(current_site)]


async def own_session(request: Request, site: Site, session_id: str, create: bool = False) -> bool:
    """Whether `session_id` exists for `site`. Another site's session is reported as unknown.
    The demo site may name its own sessions; real sites use ids from POST /api/sessions."""
    manager = runtime_of(request).manager
    info = await manager.session(session_id, with_turns=False)
    if info.created:
        if info.site != site.key:
            raise HTTPException(404, f"No conversation with id {session_id}.")
        return True
    if not site.demo:
        raise HTTPException(404, "Unknown conversation: start one with POST /api/sessions.")
    if create:
        await manager.start_session(session_id, "web", site.key)
    return False


def chat_router() -> APIRouter:
    router = APIRouter(prefix="/api", responses=ERRORS)

    @router.post("/sessions", response_model=SessionCreated, status_code=201)
    async def new_session(request: Request, site: CurrentSite) -> SessionCreated:
        """A new conversation for this site, with an unguessable id (192 bits)."""
        session_id = secrets.token_urlsafe(24)
        await runtime_of(request).manager.start_session(session_id, "web", site.key)
        return SessionCreated(session_id=session_id, site=SiteOut(**site_style(site)))

    @router.get("/team", response_model=TeamOut)
    async def team(request: Request, site: CurrentSite) -> TeamOut:
        """Whether a customer who asks for a person now finds the team there (the widget says
        so under its title)."""
        status = await runtime_of(request).manager.team()
        return TeamOut(here=status.here, back=status.back or None, usual_wait_s=status.usual_wait_s)

    @router.get("/site", response_model=SiteOut)
    async def site_style_route(site: CurrentSite) -> SiteOut:
        """The widget's title, greeting, colour, language and privacy notice for this site."""
        return SiteOut(**site_style(site))

    @router.post("/chat", response_model=ChatResponse)
    async def chat(body: ChatRequest, request: Request, site: CurrentSite) -> ChatResponse:
        """Ask a question; the reply comes back when it is complete."""
        await own_session(request, site, body.session_id, create=True)
        inbound = Inbound(body.session_id, body.message, message_id=body.message_id, page=body.page)
        return ChatResponse.of(await runtime_of(request).manager.ask(inbound))

    @router.post("/chat/stream", response_class=EventSourceResponse)
    async def chat_stream(
        body: ChatRequest, request: Request, site: CurrentSite
    ) -> AsyncIterator[ServerSentEvent]:
        """The reply as Server-Sent Events: `token` events with text as it is generated, then
        `done` with the whole reply (its text is final), or `error`. Closing the connection
        stops the generation."""
        try:
            await own_session(request, site, body.session_id, create=True)
            inbound = Inbound(
                body.session_id, body.message, message_id=body.message_id, page=body.page
            )
            async for event in runtime_of(request).manager.handle(inbound):
                if isinstance(event, ReplyChunk):
                    yield ServerSentEvent(event="token", data={"text": event.text})
                elif isinstance(event, Reply):
                    done = ChatResponse.of(event).model_dump()
                    yield ServerSentEvent(event="done", data=done)
        except (ConversationError, HTTPException) as exc:
            status, message = status_of(exc)
            yield ServerSentEvent(event="error", data={"status": status, "error": message})

    @router.get("/chat/{session_id}/history", response_model=HistoryResponse)
    async def history(
        request: Request, site: CurrentSite, session_id: Annotated[SessionId, Path()]
    ) -> HistoryResponse:
        """The conversation so far, oldest first (customer, assistant and operator messages)."""
        if not await own_session(request, site, session_id):
            return HistoryResponse(session_id=session_id, turns=[])
        manager = runtime_of(request).manager
        # Read before the history: a message written in between comes twice, never not at all.
        after, now = await manager.handoff.outbox.last_id("web"), time.time()
        turns = await manager.history(session_id)
        if any(t.role == "operator" for t in turns):  # seen: not to be e-mailed
            await manager.follow_ups.shown(session_id, now)
        return HistoryResponse(
            session_id=session_id, turns=[TurnOut.of(t) for t in turns], events_after=after
        )

    @router.delete("/chat/{session_id}", status_code=204)
    async def erase(
        request: Request, site: CurrentSite, session_id: Annotated[SessionId, Path()]
    ) -> None:
        """Delete this conversation: everything kept of it (its messages, the records of its
        replies, its questions in the operators' queue). Its id is unknown afterwards; a
        conversation that goes on starts with POST /api/sessions."""
        if await own_session(request, site, session_id):
            await runtime_of(request).manager.erase(session_id)

    @router.post("/chat/{session_id}/files", response_model=ChatResponse, openapi_extra=UPLOAD)
    async def send_file(
        request: Request,
        site: CurrentSite,
        session_id: Annotated[SessionId, Path()],
        name: Annotated[
            str, Query(max_length=200, description="The file's name on the customer's device.")
        ] = "",
    ) -> ChatResponse:
        """A photo or file (the request body: a PNG, JPEG, GIF or WebP image or a PDF, at most
        5 MB) for the person the customer waits for or talks to, such as a picture of the
        broken item. It is kept with the conversation, erased with it, and told as a message of
        the customer's ("[image photo.jpg]"); the reply is what they are told then. 409 while
        the assistant has the conversation: it reads only text."""
        if not await own_session(request, site, session_id):
            raise HTTPException(404, f"No conversation with id {session_id}.")
        data = await request.body()
        manager = runtime_of(request).manager
        return ChatResponse.of(await manager.attach(Inbound(session_id, ""), name, data))

    @router.post("/chat/{session_id}/typing", status_code=204)
    async def typing(
        request: Request, site: CurrentSite, session_id: Annotated[SessionId, Path()]
    ) -> None:
        """The customer is typing a message to the person who has the conversation (send it at
        most every 4 s while they type): the operator desk shows it for 6 s, or until the
        message comes. 409 while no person has the conversation."""
        if not await own_session(request, site, session_id):
            raise HTTPException(404, f"No conversation with id {session_id}.")
        await runtime_of(request).manager.handoff.customer_typing(session_id, time.time())

    @router.get("/chat/{session_id}/files/{file_id}", response_class=Response, responses=DOWNLOAD)
    async def file(
        request: Request,
        site: CurrentSite,
        session_id: Annotated[SessionId, Path()],
        file_id: Annotated[str, Path(pattern=FILE_ID)],
    ) -> Response:
        """A photo or file of the conversation: one an operator sent (an `operator` event's or
        a turn's `file`), or one the customer sent. An image to show, a PDF to download."""
        if not await own_session(request, site, session_id):
            raise HTTPException(404, "No such file in this conversation (deleted or expired).")
        return served(await runtime_of(request).manager.files.get(session_id, file_id))

    @router.post("/chat/{session_id}/feedback", status_code=204)
    async def feedback(
        body: FeedbackRequest,
        request: Request,
        site: CurrentSite,
        session_id: Annotated[SessionId, Path()],
    ) -> None:
        """👍 or 👎 on one reply; a 👎 puts the question in the operators' unanswered queue."""
        await own_session(request, site, session_id)
        await runtime_of(request).manager.feedback.rate(session_id, body.reply_id, body.rating)

    @router.get("/chat/{session_id}/events", response_class=EventSourceResponse)
    async def operator_messages(
        request: Request,
        site: CurrentSite,
        session_id: Annotated[SessionId, Path()],
        last_event_id: Annotated[str | None, Header(pattern=r"^\d{1,19}-\d{1,19}$")] = None,
        after: Annotated[
            str | None,
            Query(
                pattern=r"^\d{1,19}-\d{1,19}$",
                description="Start after this message (the history's `events_after`).",
            ),
        ] = None,
    ) -> AsyncIterator[ServerSentEvent]:
        """Operator messages for this conversation as they are written (`operator` events, with
        the conversation's `state` as they are sent: "bot" once it is back with the assistant;
        and the `file` of a photo or file, at GET /api/chat/{session}/files/{file}), and
        `typing` events while an operator writes one (show it for 6 s, or until it comes).
        A reconnecting EventSource resumes after its Last-Event-ID; a new one after `after`,
        else with the messages of the last few seconds (written while it was connecting)."""
        await own_session(request, site, session_id)
        manager = runtime_of(request).manager
        handoff = manager.handoff
        after = last_event_id or after or f"{int(time.time() * 1000) - 5000}-0"
        while not await request.is_disconnected():
            try:
                messages = await handoff.outbox.read("web", after, block_ms=10_000)
            except StorageUnavailable:
                yield ServerSentEvent(event="error", data={"status": 503, "error": "retrying"})
                return
            for message in messages:
                after = message.id
                if message.session_id == session_id and message.typing:
                    typist = {"operator": message.operator}
                    yield ServerSentEvent(event="typing", data=typist, id=message.id)
                elif message.session_id == session_id:
                    try:
                        info = await manager.session(session_id, with_turns=False)
                        await manager.follow_ups.shown(session_id, time.time())
                    except StorageUnavailable:
                        yield ServerSentEvent(
                            event="error", data={"status": 503, "error": "retrying"}
                        )
                        return
                    data = {"text": message.text, "operator": message.operator, "state": info.state}
                    if message.rating_id:  # the customer may rate the operator's help with it
                        data["rating_id"] = message.rating_id
                    if message.file:  # a photo or file of theirs, at /chat/{id}/files/{file}
                        data["file"] = message.file
                    yield ServerSentEvent(event="operator", data=data, id=message.id)
            if not messages:
                yield ServerSentEvent(comment="keep-alive")

    return router


def site_style(site: Site) -> dict[str, str]:
    return {
        "title": site.title,
        "greeting": site.greeting,
        "colour": site.colour,
        "language": site.language,
        "privacy_url": site.privacy_url,
    }
