"""The web face: chat API, the demo chat page and health, as a FastAPI app factory."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Path, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse

from adapters.runtime import Runtime, build_runtime
from adapters.schemas import (
    ChatRequest,
    ChatResponse,
    ErrorResponse,
    HistoryResponse,
    SessionId,
    TurnOut,
)
from adapters.settings import Settings
from bot import ConversationError, Inbound, InvalidMessage, StorageUnavailable

ERRORS: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorResponse},
    503: {"model": ErrorResponse},
}


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_runtime(settings) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(title="answerdesk", version="0.1.0", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
            problems.append(f"{where}: {err['msg']}")
        return JSONResponse(status_code=422, content={"error": "; ".join(problems)})

    @app.exception_handler(StorageUnavailable)
    async def storage_down(request: Request, exc: StorageUnavailable) -> JSONResponse:
        return JSONResponse(
            status_code=503,
            content={"error": "The assistant's storage is unavailable; try again shortly."},
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(InvalidMessage)
    async def invalid_message(request: Request, exc: InvalidMessage) -> JSONResponse:
        return JSONResponse(status_code=422, content={"error": str(exc)})

    @app.exception_handler(ConversationError)
    async def conversation_error(request: Request, exc: ConversationError) -> JSONResponse:
        return JSONResponse(status_code=503, content={"error": str(exc)})

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Answers once the model, the knowledge base and Redis are ready to serve."""
        return {"status": "ok"}

    @app.post("/api/chat", response_model=ChatResponse, responses=ERRORS)
    async def chat(body: ChatRequest, request: Request) -> ChatResponse:
        runtime: Runtime = request.app.state.runtime
        reply = await runtime.manager.ask(Inbound(session_id=body.session_id, text=body.message))
        return ChatResponse.of(reply)

    @app.get("/api/chat/{session_id}/history", response_model=HistoryResponse, responses=ERRORS)
    async def history(
        request: Request, session_id: Annotated[SessionId, Path()]
    ) -> HistoryResponse:
        runtime: Runtime = request.app.state.runtime
        turns = await runtime.manager.history(session_id)
        return HistoryResponse(session_id=session_id, turns=[TurnOut.of(t) for t in turns])

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("adapters").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(page)

    return app
