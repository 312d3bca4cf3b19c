"""How the core's errors reach HTTP clients: a status code and `{"error": "what is wrong"}`."""

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from redis.exceptions import RedisError
from starlette.exceptions import HTTPException

from adapters.sites import SiteError
from bot import (
    BadFile,
    BadSavedReply,
    ConversationError,
    DuplicateMessage,
    HandoffError,
    InvalidMessage,
    RateLimited,
    StorageUnavailable,
    UnknownItem,
    UnknownReply,
    UnknownSession,
)
from knowledge import EntryExists, EntryNotFound, KnowledgeError

STATUS: list[tuple[type[Exception], int]] = [
    (InvalidMessage, 422),
    (BadFile, 422),
    (BadSavedReply, 422),
    (EntryNotFound, 404),
    (EntryExists, 409),
    (KnowledgeError, 422),
    (SiteError, 422),
    (DuplicateMessage, 409),
    (HandoffError, 409),
    (UnknownSession, 404),
    (UnknownReply, 404),
    (UnknownItem, 404),
    (RateLimited, 429),
    (StorageUnavailable, 503),
    (RedisError, 503),
    (ConversationError, 503),
]


def status_of(exc: Exception) -> tuple[int, str]:
    """The HTTP status and the message a client gets for `exc`."""
    if isinstance(exc, HTTPException):
        return exc.status_code, str(exc.detail)
    if isinstance(exc, StorageUnavailable | RedisError):
        return 503, "The assistant's storage is unavailable; try again shortly."
    return next(code for kind, code in STATUS if isinstance(exc, kind)), str(exc)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"] if p != "body") or "body"
            problems.append(f"{where}: {err['msg']}")
        message = "; ".join(problems)
        if request.url.path.startswith("/v1/"):  # OpenAI clients expect OpenAI's error shape
            error = {"message": message, "type": "invalid_request_error", "param": None}
            return JSONResponse(status_code=400, content={"error": {**error, "code": None}})
        return JSONResponse(status_code=422, content={"error": message})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return JSONResponse(
            status_code=exc.status_code, content={"error": exc.detail}, headers=exc.headers
        )

    async def core_error(request: Request, exc: Exception) -> JSONResponse:
        status, message = status_of(exc)
        headers = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(exc.retry_after_s)
        elif isinstance(exc, StorageUnavailable | RedisError):
            headers["Retry-After"] = "5"
        return JSONResponse(status_code=status, content={"error": message}, headers=headers)

    for kind, _ in STATUS:
        app.add_exception_handler(kind, core_error)
