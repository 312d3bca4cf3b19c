"""Tells the team by e-mail that a customer is waiting for a person: for a team that lives in its
mailbox rather than in a team chat. One e-mail per customer put in line (and per reminder), to
`ANSWERDESK_TEAM_EMAIL`, over the SMTP server the customers' e-mails use
(`adapters.email_follow_ups.Mailer`). Like the webhook's notice it carries none of the
customer's words: the conversation stays in the operator desk, where it can be erased."""

import logging
from collections.abc import Callable
from email.message import EmailMessage

import aiosmtplib

from adapters.background import Background
from adapters.email_follow_ups import Mailer
from adapters.handoff_webhook import notification
from bot import QuietNotifier, Waiting

log = logging.getLogger(__name__)


class TeamEmail(QuietNotifier):
    """A `bot.HandoffNotifier` that e-mails `to` of each customer who waits for a person. Close
    it with `aclose`, which lets e-mails in flight finish."""

    def __init__(
        self,
        mailer: Mailer,
        to: str,
        desk_url: str | None = None,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        self._mailer = mailer
        self._to = to
        self._desk_url = desk_url
        self._on_result = on_result
        self._background = Background()

    def waiting(self, call: Waiting) -> None:
        self._background.spawn(self._send(call))

    def message(self, call: Waiting) -> EmailMessage:
        still = call.reason.startswith("still not taken")
        subject = (
            f"{'Still waiting' if still else 'Waiting'} for a person: a customer "
            f"(conversation {call.session_id[:8]})"
        )
        return self._mailer.message(self._to, subject, notification(call, self._desk_url)["text"])

    async def _send(self, call: Waiting) -> None:
        try:
            await self._mailer.send(self.message(call))
        except (aiosmtplib.SMTPException, OSError) as exc:
            log.warning("Could not e-mail the team of a waiting customer: %s", exc)
            result = "failed"
        else:
            result = "sent"
        if self._on_result is not None:
            self._on_result(result)

    async def aclose(self) -> None:
        await self._background.aclose()
