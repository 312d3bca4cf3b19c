"""POST /telegram/webhook: Telegram's updates, checked against the secret set by
`answerdesk telegram set-webhook`, answered at once and processed in the background."""

import json
import logging
import secrets

from fastapi import APIRouter, Request, Response
from pydantic import ValidationError

from adapters.runtime import Runtime

log = logging.getLogger(__name__)


def _problem(exc: Exception) -> str:
    """What is wrong with an update, without its values (they may hold a customer's text)."""
    if isinstance(exc, ValidationError):
        return "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'update'}: {e['msg']}" for e in exc.errors()
        )
    if isinstance(exc, json.JSONDecodeError):
        return f"not JSON ({exc.msg})"
    return type(exc).__name__


def telegram_webhook_router() -> APIRouter:
    router = APIRouter()

    @router.post("/telegram/webhook", include_in_schema=False)
    async def webhook(request: Request) -> Response:
        runtime: Runtime = request.app.state.runtime
        telegram = runtime.telegram
        assert telegram is not None  # the route exists only when a token is configured
        expected = await telegram.webhook_secret()
        given = request.headers.get("X-Telegram-Bot-Api-Secret-Token", "")
        if not expected or not secrets.compare_digest(given.encode(), expected.encode()):
            return Response(status_code=401)
        try:
            update = json.loads(await request.body())
            telegram.feed(update)
        except (ValueError, TypeError) as exc:  # not JSON, or not an Update
            log.warning("malformed Telegram update ignored: %s", _problem(exc))
            return Response(status_code=400)
        return Response(status_code=200)

    return router
