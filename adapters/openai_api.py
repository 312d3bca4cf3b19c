"""An OpenAI-compatible API (`/v1/chat/completions`, `/v1/models`) over the same conversation
manager, so any OpenAI client can ask the FAQ assistant. The API key is the site key."""

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, Request
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.sse import format_sse_event
from pydantic import BaseModel, ConfigDict, Field

from adapters.errors import status_of
from adapters.runtime import Runtime, local_adapters
from adapters.sites import Site
from bot import ConversationError, Inbound, Reply, ReplyChunk
from engine import GenerationParams

DEFAULT_MODEL = "default"  # the engine's default adapter (or none); configured adapters by name


def _models(runtime: Runtime) -> list[str]:
    settings = runtime.settings
    adapters = settings.adapters if settings.model_url else local_adapters(settings)[0]
    return [DEFAULT_MODEL, *adapters]


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, kind: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.kind, self.code = status, message, kind, code

    def response(self) -> JSONResponse:
        body = {
            "error": {"message": self.message, "type": self.kind, "param": None, "code": self.code}
        }
        return JSONResponse(status_code=self.status, content=body)


class Message(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "user", "assistant", "developer", "tool"]
    content: str | list[dict[str, Any]] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return "".join(p.get("text", "") for p in self.content if p.get("type") == "text")
        return self.content or ""


class CompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")
    model: str
    messages: list[Message] = Field(min_length=1)
    stream: bool = False
    max_tokens: int | None = Field(default=None, ge=1, le=2048)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=2048)
    temperature: float | None = Field(default=None, ge=0, le=2)
    user: str | None = Field(default=None, max_length=64)
    stop: str | list[str] | None = Field(default=None, max_length=4)
    raw: bool = Field(
        default=False,
        description="Skip the FAQ: talk to the model itself (with `model`'s adapter).",
    )


def openai_router() -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["openai"])

    async def site_of(request: Request, authorization: str | None) -> Site:
        runtime: Runtime = request.app.state.runtime
        key = (authorization or "").removeprefix("Bearer ").strip()
        site = await runtime.sites.get(key) if key else None
        if site is None:
            raise OpenAIError(
                401,
                "Invalid API key: use a site key as the API key.",
                "invalid_request_error",
                "invalid_api_key",
            )
        if not site.allows(request.headers.get("origin")):
            raise OpenAIError(403, "This origin may not use this key.", "invalid_request_error")
        return site

    @router.get("/models")
    async def models(
        request: Request, authorization: Annotated[str | None, Header()] = None
    ) -> Any:
        """The models (LoRA adapters) that `model` may name."""
        try:
            await site_of(request, authorization)
        except OpenAIError as exc:
            return exc.response()
        models = _models(request.app.state.runtime)
        data = [
            {"id": m, "object": "model", "created": 0, "owned_by": "answerdesk"} for m in models
        ]
        return {"object": "list", "data": data}

    @router.post("/chat/completions")
    async def completions(
        body: CompletionRequest,
        request: Request,
        authorization: Annotated[str | None, Header()] = None,
    ) -> Any:
        """Chat completions: the last user message goes through the FAQ assistant (or, with
        `raw`, the whole conversation to the model), streamed or not."""
        try:
            site = await site_of(request, authorization)
            if body.model not in _models(request.app.state.runtime):
                raise OpenAIError(
                    404,
                    f"The model {body.model!r} does not exist; see /v1/models.",
                    "invalid_request_error",
                    "model_not_found",
                )
            question = next((m.text() for m in reversed(body.messages) if m.role == "user"), "")
            if not question.strip():
                raise OpenAIError(
                    400, "messages must contain a user message with text.", "invalid_request_error"
                )
        except OpenAIError as exc:
            return exc.response()
        runtime: Runtime = request.app.state.runtime
        completion_id = f"chatcmpl-{secrets.token_hex(12)}"
        created = int(time.time())
        events = _raw(runtime, body) if body.raw else _answer(runtime, site, body, question)
        if body.stream:
            stream = _stream(events, completion_id, created, body.model)
            return StreamingResponse(stream, media_type="text/event-stream")
        try:
            text, reply = "", None
            async for event in events:
                if isinstance(event, ReplyChunk):
                    text += event.text
                elif isinstance(event, Reply):
                    reply = event
        except ConversationError as exc:
            status, message = status_of(exc)
            return OpenAIError(
                status, message, "server_error" if status >= 500 else "invalid_request_error"
            ).response()
        content = reply.text if reply is not None else text
        return {
            "id": completion_id,
            "object": "chat.completion",
            "created": created,
            "model": body.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "answerdesk": _extension(reply),
        }

    return router


async def _answer(
    runtime: Runtime, site: Site, body: CompletionRequest, question: str
) -> AsyncIterator[ReplyChunk | Reply]:
    # One conversation per `user` of a site; without `user`, every request stands alone.
    who = body.user or secrets.token_hex(16)
    session = "".join(c if c.isalnum() or c in "_.:-" else "-" for c in f"oa-{site.key}-{who}")
    async for event in runtime.manager.handle(
        Inbound(session, question, channel="openai", user_id=who)
    ):
        yield event


async def _raw(runtime: Runtime, body: CompletionRequest) -> AsyncIterator[ReplyChunk | Reply]:
    model = runtime.manager.model
    messages = [
        {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
        for m in body.messages
        if m.role != "tool"
    ]
    params = GenerationParams(
        max_new_tokens=body.max_completion_tokens
        or body.max_tokens
        or runtime.settings.max_new_tokens,
        temperature=body.temperature or 0.0,
        stop=(body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ()),
        adapter=None if body.model == DEFAULT_MODEL else body.model,
    )
    async for chunk in model.stream(messages, params):  # type: ignore[arg-type]
        yield ReplyChunk(chunk)


async def _stream(
    events: AsyncIterator[ReplyChunk | Reply], completion_id: str, created: int, model: str
) -> AsyncIterator[bytes]:
    def chunk(delta: dict[str, str], finish: str | None = None, **extra: Any) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": model,
            "choices": [choice],
            **extra,
        }
        return format_sse_event(data_str=json.dumps(body))

    yield chunk({"role": "assistant", "content": ""})
    streamed = ""
    try:
        async for event in events:
            if isinstance(event, ReplyChunk):
                streamed += event.text
                yield chunk({"content": event.text})
            elif event.text != streamed:  # an FAQ answer, or a generated reply the check replaced
                yield chunk({"content": event.text if not streamed else "\n\n" + event.text})
            if isinstance(event, Reply):
                yield chunk({}, "stop", answerdesk=_extension(event))
                break
        else:
            yield chunk({}, "stop")
    except ConversationError as exc:
        status, message = status_of(exc)
        error = {"message": message, "type": "server_error", "code": status}
        yield format_sse_event(data_str=json.dumps({"error": error}))
    yield format_sse_event(data_str="[DONE]")


def _extension(reply: Reply | None) -> dict[str, Any] | None:
    if reply is None:
        return None
    return {
        "mode": reply.mode,
        "sources": [{"id": s.id, "question": s.question, "score": s.score} for s in reply.sources],
        "reply_id": reply.reply_id,
        "session_id": reply.session_id,
    }
