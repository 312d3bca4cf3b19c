"""Outgoing Telegram traffic within Telegram's limits: ~30 messages a second in all, ~1 a second
per chat, and a 429 answered by waiting its `retry_after` and sending again (never dropped)."""

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiogram import Bot
from aiogram.client.session.middlewares.base import (
    BaseRequestMiddleware,
    NextRequestMiddlewareType,
)
from aiogram.exceptions import TelegramRetryAfter
from aiogram.methods import Response, TelegramMethod
from aiolimiter import AsyncLimiter

log = logging.getLogger(__name__)

# Methods that put a message in front of a user; the others (getUpdates, answerCallbackQuery,
# sendChatAction, setMyCommands …) are not paced.
PACED = {"SendMessage", "EditMessageText", "SendPhoto", "SendDocument", "CopyMessage"}


class Pacing(BaseRequestMiddleware):
    def __init__(
        self,
        per_second: float = 30,
        per_chat_per_second: float = 1,
        max_retries: int = 5,
        on_retry: Callable[[], None] | None = None,
    ) -> None:
        self._global = AsyncLimiter(per_second, 1)
        self._per_chat_rate = per_chat_per_second
        self._chats: dict[Any, AsyncLimiter] = {}
        self._max_retries = max_retries
        self._on_retry = on_retry

    async def __call__(
        self,
        make_request: NextRequestMiddlewareType[Any],
        bot: Bot,
        method: TelegramMethod[Any],
    ) -> Response[Any]:
        paced = type(method).__name__ in PACED
        chat = getattr(method, "chat_id", None)
        for attempt in range(self._max_retries + 1):
            if paced:
                if chat is not None:
                    await self._chat_limiter(chat).acquire()
                await self._global.acquire()
            try:
                return await make_request(bot, method)
            except TelegramRetryAfter as exc:
                if attempt == self._max_retries:
                    raise
                if self._on_retry is not None:
                    self._on_retry()
                log.warning("Telegram asked to wait %s s before %s", exc.retry_after, exc.method)
                await asyncio.sleep(exc.retry_after)
        raise AssertionError("unreachable")  # pragma: no cover

    def _chat_limiter(self, chat: Any) -> AsyncLimiter:
        limiter = self._chats.get(chat)
        if limiter is None:
            if len(self._chats) >= 10_000:  # forget the chat paced longest ago
                self._chats.pop(next(iter(self._chats)))
            limiter = self._chats[chat] = AsyncLimiter(1, 1 / self._per_chat_rate)
        return limiter
