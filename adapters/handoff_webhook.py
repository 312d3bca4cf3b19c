"""Tells the operators' team chat that a customer is waiting for a person: one JSON POST per
customer put in line, to a webhook URL. Its `text` is what Slack, Mattermost, Rocket.Chat and
Discord's Slack-compatible URL (…/slack) show; the other fields are for anything else that reads
it (n8n, Zapier, your own endpoint). A Telegram Bot API URL,
`https://api.telegram.org/bot<token>/sendMessage?chat_id=<chat>`, gets the Bot API's own
parameters instead (`chat_id`, `text`): the bot writes the text into that chat, such as the
operators' group. It carries no words of the customer's: the conversation stays in the operator
desk, where it can be erased.

Delivery runs beside the conversation (the customer's reply never waits for it) and retries
connection errors, 429 and 5xx answers with exponential backoff (tenacity); any other answer is
a configuration mistake, logged once.
"""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx2
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from adapters.background import Background
from bot import (
    HandoffDesk,
    HandoffNotifier,
    QuietNotifier,
    StorageUnavailable,
    TeamHours,
    Waiting,
)

log = logging.getLogger(__name__)

CHANNELS = {"web": "the web chat", "telegram": "Telegram", "openai": "the OpenAI-compatible API"}


def notification(call: Waiting, desk_url: str | None) -> dict[str, Any]:
    """The JSON body posted for `call`."""
    where = CHANNELS.get(call.channel, call.channel)
    line = "next in line" if call.place == 1 else f"number {call.place} in line"
    text = (
        f"A customer in {where} (conversation {call.session_id[:8]}, as the operator desk shows "
        f"it) is waiting for a person ({call.reason}); they are {line}."
    )
    if call.back:
        text += f" It is outside the team's hours: they were told it is back {call.back}."
    if desk_url:
        text += f" Open the operator desk: {desk_url}"
    return {
        "text": text,
        "event": "handoff",
        "session_id": call.session_id,
        "channel": call.channel,
        "place": call.place,
        "reason": call.reason,
        "operators_online": call.staffed,  # a desk in use in the last 2 min, or someone's /here
        "team_back": call.back or None,  # outside the team's hours: when it is back
        "operator_desk": desk_url,
    }


def telegram_chat(url: str) -> str | None:
    """The chat a Bot API sendMessage URL (…/bot<token>/sendMessage?chat_id=…) writes to."""
    parsed = httpx2.URL(url)
    if not parsed.path.endswith("/sendMessage"):
        return None
    return parsed.params.get("chat_id")


def _worth_retrying(exc: BaseException) -> bool:
    if isinstance(exc, httpx2.HTTPStatusError):
        return exc.response.status_code == 429 or exc.response.status_code >= 500
    return isinstance(exc, httpx2.TransportError)


class HandoffWebhook(QuietNotifier):
    """A `bot.HandoffNotifier` that POSTs each waiting customer to `url` (and tells of nothing
    else: it carries none of the customer's words). Close it with `aclose`,
    which lets notifications in flight finish for up to `grace_s`."""

    def __init__(
        self,
        url: str,
        desk_url: str | None = None,
        *,
        attempts: int = 5,
        max_wait_s: float = 30,
        timeout_s: float = 10,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._url = url
        self._desk_url = desk_url
        self._attempts = attempts
        self._max_wait_s = max_wait_s
        self._on_result = on_result
        self._client = httpx2.AsyncClient(timeout=timeout_s)
        self._background = Background()

    def waiting(self, call: Waiting) -> None:
        self._background.spawn(self._post(call))

    async def _post(self, call: Waiting) -> None:
        body = notification(call, self._desk_url)
        if (chat := telegram_chat(self._url)) is not None:
            body = {"chat_id": chat, "text": body["text"]}
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(self._attempts),
                wait=wait_exponential(multiplier=1, max=self._max_wait_s),
                retry=retry_if_exception(_worth_retrying),
                reraise=True,
            ):
                with attempt:
                    answer = await self._client.post(self._url, json=body)
                    answer.raise_for_status()
        except httpx2.HTTPError as exc:
            log.error(
                "Could not tell the operators that session %s waits for a person: the handoff "
                "webhook failed (%s). Check ANSWERDESK_HANDOFF_WEBHOOK_URL; the customer is in "
                "the operator desk's queue all the same.",
                call.session_id,
                described(exc),
            )
            self._report("failed")
        else:
            self._report("sent")

    async def check(self) -> str:
        """Post a test notification once, now; how the webhook answered ("200 OK"). Raises
        httpx2.HTTPError when it could not be posted or was refused (see `described`)."""
        text = (
            "answerdesk is connected: customers who ask for a person will be posted here. "
            "(A test notification.)"
        )
        if self._desk_url:
            text += f" The operator desk: {self._desk_url}"
        body: dict[str, Any] = {"text": text, "event": "test", "operator_desk": self._desk_url}
        if (chat := telegram_chat(self._url)) is not None:
            body = {"chat_id": chat, "text": text}
        answer = await self._client.post(self._url, json=body)
        answer.raise_for_status()
        return f"{answer.status_code} {answer.reason_phrase}"

    def _report(self, result: str) -> None:
        if self._on_result is not None:
            self._on_result(result)

    async def aclose(self, grace_s: float = 5) -> None:
        await self._background.aclose(grace_s)
        await self._client.aclose()


async def remind(
    desk: HandoffDesk,
    notifiers: Sequence[HandoffNotifier],
    after_s: float,
    hours: TeamHours | None = None,
) -> None:
    """Until cancelled: tell the `notifiers` once more of each customer who has waited `after_s`
    without an operator taking them (looked for every tenth of that, at most every 30 s).
    Outside the team's `hours` no one is reminded: the customers waiting overnight are, once,
    when the team's day begins."""
    while True:
        await asyncio.sleep(min(30.0, after_s / 10))
        if hours is not None and not hours.is_open(datetime.now(UTC)):
            continue
        try:
            for call in await desk.overdue(after_s, time.time()):
                for notifier in notifiers:
                    notifier.waiting(call)
        except StorageUnavailable as exc:
            log.warning("Could not look for customers waiting long: %s", exc)


def described(exc: httpx2.HTTPError) -> str:
    """What went wrong with a webhook call, without its URL (the chat's secret)."""
    if isinstance(exc, httpx2.HTTPStatusError):
        return f"it answered {exc.response.status_code} {exc.response.reason_phrase}"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
