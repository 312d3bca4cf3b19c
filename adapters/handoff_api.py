"""The operator API for human handoff under /admin: the queues, taking a conversation, writing to
the customer (words, photos and files, "typing"), notes, handing back or passing on, the
channels' outboxes, and the team's saved replies. Bearer-token auth, as the rest of the
operator API (adapters/admin.py)."""

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from adapters.admin import ERRORS
from adapters.admin_auth import acting, operator_auth
from adapters.file_responses import UPLOAD
from adapters.runtime import Runtime
from adapters.schemas import SessionId, SessionOut, Text
from bot.saved_replies import MAX_TEXT, MAX_TITLE

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


class SavedReplyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    operator: Operator = None
    text: str = Field(min_length=1, max_length=MAX_TEXT)


class SavedReplyOut(BaseModel):
    title: str
    text: str
    by: str = Field(description="Who saved it last.")
    updated: float


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


def handoff_router(token: str | None) -> APIRouter:
    router = APIRouter(prefix="/admin", dependencies=[operator_auth(token)], responses=ERRORS)

    def runtime(request: Request) -> Runtime:
        return request.app.state.runtime  # type: ignore[no-any-return]

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
            await desk.presence.watched(request.state.operator)
        active = await desk.active()
        typing = await desk.customers_typing(active)
        return HandoffQueues(
            waiting=[SessionOut.of(s) for s in await desk.waiting()],
            active=[SessionOut.of(s, s.session_id in typing) for s in active],
            present=await desk.presence.present(),
        )

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
        messages = await runtime(request).manager.handoff.outbox.read(channel, after)
        return [OutboxOut(**m.__dict__) for m in messages]

    @router.get("/replies", response_model=list[SavedReplyOut])
    async def saved_replies(request: Request) -> list[SavedReplyOut]:
        """The team's saved replies, by title: what operators write again and again, picked at
        the desk to put in the message box."""
        return [
            SavedReplyOut(**asdict(r)) for r in await runtime(request).manager.saved_replies.all()
        ]

    @router.put("/replies/{title}", response_model=SavedReplyOut)
    async def save_reply(
        body: SavedReplyIn,
        request: Request,
        title: Annotated[str, Path(min_length=1, max_length=MAX_TITLE)],
    ) -> SavedReplyOut:
        """Save a reply under `title` (replacing the one of that title); 200 at most."""
        operator = acting(request, body.operator)
        saved = await runtime(request).manager.saved_replies.put(title, body.text, operator)
        return SavedReplyOut(**asdict(saved))

    @router.delete("/replies/{title}", status_code=204)
    async def remove_reply(
        request: Request, title: Annotated[str, Path(min_length=1, max_length=MAX_TITLE)]
    ) -> None:
        """Remove the saved reply of this title."""
        if not await runtime(request).manager.saved_replies.remove(title):
            raise HTTPException(404, f"No saved reply titled {title!r}.")

    return router
