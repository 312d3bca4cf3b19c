"""The web face: chat API, the demo chat page and health, as a FastAPI app factory."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.responses import HTMLResponse

from adapters.admin import admin_router
from adapters.errors import install_error_handlers
from adapters.runtime import Runtime, build_runtime
from adapters.schemas import (
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    FeedbackRequest,
    HistoryResponse,
    SessionId,
    TurnOut,
)
from adapters.settings import Settings
from adapters.telegram_webhook import telegram_webhook_router
from bot import Inbound

ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse} for code in (404, 409, 422, 429, 503)
}


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_runtime(settings) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(title="answerdesk", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.include_router(admin_router(settings.admin_token))
    if settings.telegram_token:
        app.include_router(telegram_webhook_router())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Answers once the model, the knowledge base and Redis are ready to serve."""
        return {"status": "ok"}

    @app.post("/api/chat", response_model=ChatResponse, responses=ERRORS)
    async def chat(body: ChatRequest, request: Request) -> ChatResponse:
        """Ask a question; the reply comes back when it is complete."""
        runtime: Runtime = request.app.state.runtime
        inbound = Inbound(session_id=body.session_id, text=body.message, message_id=body.message_id)
        return ChatResponse.of(await runtime.manager.ask(inbound))

    @app.get("/api/chat/{session_id}/history", response_model=HistoryResponse, responses=ERRORS)
    async def history(
        request: Request, session_id: Annotated[SessionId, Path()]
    ) -> HistoryResponse:
        """The conversation so far, oldest first (customer, assistant and operator messages)."""
        runtime: Runtime = request.app.state.runtime
        turns = await runtime.manager.history(session_id)
        return HistoryResponse(session_id=session_id, turns=[TurnOut.of(t) for t in turns])

    @app.post("/api/chat/{session_id}/feedback", status_code=204, responses=ERRORS)
    async def feedback(
        body: FeedbackRequest, request: Request, session_id: Annotated[SessionId, Path()]
    ) -> None:
        """👍 or 👎 on one reply; a 👎 puts the question in the operators' unanswered queue."""
        runtime: Runtime = request.app.state.runtime
        await runtime.manager.feedback.rate(session_id, body.reply_id, body.rating)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("adapters").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(page)

    return app
