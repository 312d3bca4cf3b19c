"""Tells the team by e-mail that a customer is waiting for a person: for a team that lives in its
mailbox rather than in a team chat. One e-mail per customer put in line (and per reminder), to
`ANSWERDESK_TEAM_EMAIL`, over the SMTP server the customers' e-mails use
(`adapters.email_follow_ups.Mailer`). Like the webhook's notice it carries none of the
customer's words: the conversation stays in the operator desk, where it can be erased."""

import logging
from collections.abc import Callable
from email.message import EmailMessage
from email.utils import make_msgid

import aiosmtplib

from adapters.background import Background
from adapters.email_follow_ups import Mailer
from adapters.handoff_webhook import notification
from bot import Inbound, SessionInfo, Turn, Waiting

log = logging.getLogger(__name__)


class TeamEmail:
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

    def wrote(self, info: SessionInfo, said: Inbound) -> None:
        """Nothing: the e-mail carries no words of the customer's."""

    def changed(self, info: SessionInfo, note: str) -> None:
        """Nothing: it tells of customers who wait, and the desk shows the rest."""

    def noted(self, info: SessionInfo, note: Turn) -> None:
        """Nothing: notes are for the desk and the team chat."""

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        """Nothing: the team answered already."""

    def erased(self, session_id: str) -> None:
        """Nothing: the e-mail holds none of the customer's words."""

    def message(self, call: Waiting) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._mailer.sender
        message["To"] = self._to
        still = call.reason.startswith("still not taken")
        message["Subject"] = (
            f"{'Still waiting' if still else 'Waiting'} for a person: a customer "
            f"(conversation {call.session_id[:8]})"
        )
        message["Message-ID"] = make_msgid(domain="answerdesk")
        message.set_content(notification(call, self._desk_url)["text"] + "\n")
        return message

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
