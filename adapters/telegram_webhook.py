"""POST /telegram/webhook: Telegram's updates, checked against the secret set by
`answerdesk telegram set-webhook`, answered at once and processed in the background."""

import json
import secrets

from fastapi import APIRouter, Request, Response

from adapters.runtime import Runtime


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
        except (ValueError, TypeError):  # not JSON, or not an Update: Telegram would not send it
            return Response(status_code=400)
        return Response(status_code=200)

    return router
