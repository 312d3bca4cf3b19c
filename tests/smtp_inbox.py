"""A real SMTP server for the tests (aiosmtpd, on a local port, in its own thread) that keeps
every e-mail it is given."""

import time
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller

from tests.server import free_port


class SmtpInbox:
    def __init__(self) -> None:
        self.received: list[EmailMessage] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self._controller.start()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        mail = message_from_bytes(envelope.content, policy=policy.default)
        assert isinstance(mail, EmailMessage)
        self.received.append(mail)
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m in self.received if m["To"] == address]

    def wait_for(self, address: str, timeout_s: float = 60) -> EmailMessage:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if found := self.to(address):
                return found[-1]
            time.sleep(0.2)
        raise AssertionError(f"no e-mail to {address} within {timeout_s} s")

    def close(self) -> None:
        self._controller.stop()
