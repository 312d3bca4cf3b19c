"""The web face as a FastAPI app factory: chat API, widget, demo page, operator API, Telegram
webhook, OpenAI-compatible API, health."""

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from importlib import resources

from asgi_correlation_id import CorrelationIdMiddleware
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from redis.exceptions import RedisError
from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import Receive, Scope, Send

from adapters.admin import admin_router
from adapters.body_limit import BodyLimit
from adapters.chat_api import chat_router
from adapters.errors import install_error_handlers
from adapters.handoff_api import handoff_router
from adapters.kb_admin import kb_router
from adapters.metrics import Metrics
from adapters.openai_api import openai_router
from adapters.runtime import build_runtime
from adapters.schemas import ErrorResponse
from adapters.settings import Settings
from adapters.telegram_webhook import telegram_webhook_router
from adapters.unanswered_api import unanswered_router
from bot import MAX_FILE_BYTES


class SiteCORS(CORSMiddleware):
    """CORS for the chat and OpenAI APIs that answers only origins some registered site allows
    (each call is then checked against its own site's origins). The sites' origins are read
    again every `REFRESH_S`, and at once (at most every `NEW_ORIGIN_S`) for an origin not among
    them: a site just registered is served at its first request, not refused for seconds."""

    REFRESH_S = 2.0
    NEW_ORIGIN_S = 0.1

    def __init__(self, app: Callable[..., Awaitable[None]]) -> None:
        super().__init__(
            app,
            allow_origins=[],
            allow_methods=["GET", "POST", "DELETE", "OPTIONS"],
            allow_headers=["content-type", "x-site-key", "authorization"],
            max_age=600,
        )
        self._origins: frozenset[str] = frozenset()
        self._checked = 0.0
        self._app = app

    def is_allowed_origin(self, origin: str) -> bool:
        return origin in self._origins

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/api/") or path.startswith("/v1/")):
            await self._app(scope, receive, send)
            return
        runtime = getattr(scope["app"].state, "runtime", None)
        age = time.monotonic() - self._checked
        origin = Headers(scope=scope).get("origin")
        new = origin is not None and origin not in self._origins and age > self.NEW_ORIGIN_S
        if runtime is not None and (age > self.REFRESH_S or new):
            with suppress(RedisError):  # keep the last known origins while Redis is away
                sites = await runtime.sites.all()
                self._origins = frozenset(o for s in sites for o in s.origins)
                self._checked = time.monotonic()
        await super().__call__(scope, receive, send)


def create_app(settings: Settings) -> FastAPI:
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with build_runtime(settings, metrics) as runtime:
            app.state.runtime = runtime
            yield

    app = FastAPI(title="answerdesk", version="0.1.0", lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(SiteCORS)
    app.add_middleware(metrics.middleware)
    app.add_middleware(CorrelationIdMiddleware, validator=None)
    app.add_middleware(
        BodyLimit,
        max_bytes=settings.max_body_bytes,
        paths={"/admin/kb/import": settings.max_import_bytes},
        endings={"/files": MAX_FILE_BYTES},  # POST …/files: a customer's or an operator's
    )
    app.include_router(chat_router())
    app.include_router(openai_router())
    app.include_router(admin_router(settings.admin_token))
    app.include_router(handoff_router(settings.admin_token))
    app.include_router(unanswered_router(settings.admin_token))
    app.include_router(kb_router(settings.admin_token))
    if settings.telegram_token:
        app.include_router(telegram_webhook_router())

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Answers once the model, the knowledge base and Redis are ready to serve."""
        return {"status": "ok"}

    @app.get("/readyz", responses={503: {"model": ErrorResponse}})
    async def readyz(request: Request) -> Response:
        """Ready when Redis answers and the model and FAQ index are loaded (this process is
        past start-up)."""
        runtime = getattr(request.app.state, "runtime", None)
        try:
            redis_ok = runtime is not None and bool(await runtime.redis.ping())
        except RedisError:
            redis_ok = False
        if not redis_ok:
            return JSONResponse({"error": "Redis is not reachable."}, status_code=503)
        return JSONResponse(
            {"status": "ready", "redis": "ok", "model": "loaded", "index": "loaded"}
        )

    @app.get("/metrics", include_in_schema=False)
    async def prometheus() -> Response:
        return metrics.exposition()

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> HTMLResponse:
        page = resources.files("adapters").joinpath("static/index.html").read_text("utf-8")
        return HTMLResponse(page.replace("{{SITE_KEY}}", settings.demo_site_key or ""))

    @app.get("/operator", response_class=HTMLResponse, include_in_schema=False)
    async def operator_desk() -> HTMLResponse:
        """The operators' page: handoffs and unanswered questions, over the /admin API (the
        page holds no data; the operator signs in with the admin token)."""
        page = resources.files("adapters").joinpath("static/operator.html").read_text("utf-8")
        return HTMLResponse(page, headers={"x-frame-options": "DENY", "cache-control": "no-store"})

    @app.get("/widget.js", include_in_schema=False)
    async def widget(request: Request) -> Response:
        script = resources.files("adapters").joinpath("static/widget.js").read_bytes()
        return Response(
            script,
            media_type="text/javascript",
            headers={"cache-control": "public, max-age=300", "access-control-allow-origin": "*"},
        )

    return app
