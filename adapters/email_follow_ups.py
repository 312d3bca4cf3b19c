"""E-mails a web chat's customer what operators wrote them that no page of theirs showed, to the
address they left while waiting for a person (`bot.follow_ups`): the customer who closed the tab
still gets the answer. Sent over SMTP by aiosmtplib (STARTTLS when the server offers it;
`smtps://` for TLS from the first byte), each e-mail by one worker; one that fails is tried
again every `RETRY_S` while the conversation lasts."""

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from email.utils import make_msgid
from urllib.parse import unquote, urlsplit

import aiosmtplib

from adapters.background import Background
from bot import (
    FollowUp,
    FollowUps,
    QuietNotifier,
    SessionFiles,
    SessionInfo,
    StorageUnavailable,
    StoredFile,
    Turn,
    words_of,
)

log = logging.getLogger(__name__)

RETRY_S = 300.0


class BadSmtpUrl(ValueError):
    """An SMTP server URL that cannot be used; the message says why."""


@dataclass(frozen=True)
class Smtp:
    """Where e-mails go: `smtp://user:password@host:587` (STARTTLS when offered) or
    `smtps://…:465` (TLS from the start)."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = None

    @classmethod
    def from_url(cls, url: str) -> "Smtp":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps"):
            raise BadSmtpUrl(
                f"The SMTP URL must begin with smtp:// or smtps://, not {parts.scheme or '…'}://"
                " (such as smtp://user:password@mail.example.com:587)."
            )
        if not parts.hostname:
            raise BadSmtpUrl("The SMTP URL names no server (smtp://user:password@HOST:587).")
        tls = parts.scheme == "smtps"
        try:
            port = parts.port or (465 if tls else 587)
        except ValueError as exc:
            raise BadSmtpUrl(f"The SMTP URL's port is not a number: {exc}") from exc
        user = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password else None
        return cls(parts.hostname, port, tls, user, password)


class Mailer:
    def __init__(
        self, smtp: Smtp, sender: str, business: str, zone: tzinfo = UTC, timeout_s: float = 30
    ) -> None:
        """`sender`: the From address ("Pinecone Outfitters <support@pinecone.example>"), which
        customers' replies reach; `zone`: the time zone of the messages' times."""
        self._smtp = smtp
        self.sender = sender
        self._business = business
        self._zone = zone
        self._timeout_s = timeout_s

    def compose(self, mail: FollowUp, files: Sequence[StoredFile]) -> EmailMessage:
        """The e-mail of `mail`'s messages, with the photos and files they carried attached."""
        names = list(dict.fromkeys(t.operator or "Our team" for t in mail.said))
        who = " and ".join(names)
        where = f"the chat on {mail.info.page}" if mail.info.page else "the chat on our web site"
        lines = [
            "Hello,",
            "",
            f"you asked for a person in {where}. You were no longer there when "
            f"{who} answered, so here is what they wrote:",
        ]
        attached = {stored.id: stored for stored in files}
        for turn in mail.said:
            when = datetime.fromtimestamp(turn.ts, self._zone).strftime("%d %b %Y, %H:%M %Z")
            lines += ["", f"{turn.operator or 'Our team'}, {when}:"]
            stored = attached.get(turn.file or "")
            text = words_of(turn.text) if stored else turn.text
            if text:
                lines.append(text)
            if stored:
                lines.append(f"(attached: {stored.name})")
        lines += [
            "",
            f"Reply to this e-mail to write to us, or open {where} again: the conversation is "
            "still there.",
            "",
            self._business,
        ]
        subject = f"{self._business}: {who} answered you"
        message = self.message(mail.info.email or "", subject, "\n".join(lines))
        for stored in files:
            main, _, sub = stored.type.partition("/")
            message.add_attachment(stored.data, maintype=main, subtype=sub, filename=stored.name)
        return message

    def message(self, to: str, subject: str, text: str) -> EmailMessage:
        """A plain-text e-mail from the sender to `to`."""
        message = EmailMessage()
        message["From"] = self.sender
        message["To"] = to
        message["Subject"] = subject
        message["Message-ID"] = make_msgid(domain="answerdesk")
        message.set_content(text)
        return message

    async def send(self, message: EmailMessage) -> None:
        smtp = self._smtp
        await aiosmtplib.send(
            message,
            hostname=smtp.host,
            port=smtp.port,
            username=smtp.username,
            password=smtp.password,
            use_tls=smtp.tls,
            timeout=self._timeout_s,
        )


class EmailFollowUps(QuietNotifier):
    """A `bot.HandoffNotifier` that queues every operator message to a web chat's customer who
    left an address, to be e-mailed if no page of theirs shows it in time (`follow_up` sends).
    Close it with `aclose`."""

    def __init__(self, follow_ups: FollowUps) -> None:
        self._follow_ups = follow_ups
        self._background = Background()

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        self._background.spawn(self._schedule(info, said))

    async def _schedule(self, info: SessionInfo, said: Turn) -> None:
        try:
            await self._follow_ups.schedule(info, said)
        except StorageUnavailable as exc:
            log.warning("Could not queue an operator message to be e-mailed: %s", exc)

    async def aclose(self) -> None:
        await self._background.aclose()


async def follow_up(
    follow_ups: FollowUps,
    files: SessionFiles,
    mailer: Mailer,
    on_result: Callable[[str], None] | None = None,
) -> None:
    """Until cancelled: e-mail what is due (looked for every third of the delay, at most every
    15 s)."""
    while True:
        await asyncio.sleep(min(15.0, follow_ups.after_s / 3))
        try:
            for mail in await follow_ups.due(time.time()):
                await _send(mail, follow_ups, files, mailer, on_result)
        except StorageUnavailable as exc:
            log.warning("Could not look for operator messages to e-mail: %s", exc)


async def _send(
    mail: FollowUp,
    follow_ups: FollowUps,
    files: SessionFiles,
    mailer: Mailer,
    on_result: Callable[[str], None] | None,
) -> None:
    session_id = mail.info.session_id
    kept = [await files.get(session_id, t.file) for t in mail.said if t.file]
    try:
        await mailer.send(mailer.compose(mail, [f for f in kept if f is not None]))
    except (aiosmtplib.SMTPException, OSError) as exc:
        # Not the address: the customer's words stay out of the log.
        log.warning(
            "Could not e-mail operator messages (conversation %s); trying again in %.0f s: %s",
            session_id[:8],
            RETRY_S,
            exc,
        )
        await follow_ups.failed(mail, RETRY_S)
        result = "failed"
    except Exception:  # a bug must not stop the e-mails of other conversations
        log.exception("Could not e-mail operator messages (conversation %s)", session_id[:8])
        await follow_ups.failed(mail, RETRY_S)
        result = "failed"
    else:
        await follow_ups.sent(mail)
        result = "sent"
    if on_result is not None:
        on_result(result)
