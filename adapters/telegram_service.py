"""Running the Telegram bot: the Bot and Dispatcher, polling or webhook updates processed once,
bot commands, and delivery of operator messages to chats."""

import asyncio
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

from aiogram import BaseMiddleware, Bot, Dispatcher
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.enums import ChatAction
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest, TelegramUnauthorizedError
from aiogram.types import (
    BotCommand,
    BotCommandScopeChat,
    BufferedInputFile,
    TelegramObject,
    Update,
    User,
)
from aiogram.utils.token import TokenValidationError
from redis.asyncio import Redis

from adapters.telegram import TelegramTexts, chat_id, telegram_router
from adapters.telegram_files import copied_from
from adapters.telegram_pacing import Pacing
from adapters.telegram_replies import rating_keyboard
from adapters.telegram_team import COMMANDS as TEAM_COMMANDS
from adapters.telegram_team import team_router
from adapters.telegram_team_chat import TeamChat
from bot import ConversationManager, OutboxMessage, StorageUnavailable, words_of

log = logging.getLogger(__name__)

COMMANDS = [
    BotCommand(command="start", description="What I can do"),
    BotCommand(command="help", description="How to ask"),
    BotCommand(command="reset", description="Start the conversation over"),
    BotCommand(command="human", description="Talk to a person"),
    BotCommand(command="delete", description="Delete our conversation"),
]
UPDATE_TTL_S = 24 * 3600
TYPING_FRESH_S = 5  # Telegram shows "typing…" for 5 s
ABANDONED_S = 60.0  # a message given to a worker and not confirmed this long: it stopped
PHOTOS = ("image/jpeg", "image/png")  # sent as photos; other kinds as documents


class TelegramSetupError(RuntimeError):
    """The bot cannot start; the message says what to fix."""


def make_bot(
    token: str | None, api_url: str | None = None, on_retry: Callable[[], None] | None = None
) -> Bot:
    if not token:
        raise TelegramSetupError(
            "ANSWERDESK_TELEGRAM_TOKEN is not set: create a bot with @BotFather and put its "
            "token in that variable."
        )
    session = AiohttpSession(api=TelegramAPIServer.from_base(api_url)) if api_url else None
    try:
        bot = Bot(token, session=session)
    except TokenValidationError as exc:
        raise TelegramSetupError(
            "ANSWERDESK_TELEGRAM_TOKEN does not look like a bot token (123456789:AA…); "
            "copy it again from @BotFather."
        ) from exc
    bot.session.middleware(Pacing(on_retry=on_retry))
    return bot


def secret_key(prefix: str) -> str:
    return f"{prefix}:telegram:webhook_secret"


async def register_webhook(bot: Bot, redis: Redis, prefix: str, url: str) -> None:
    """Have Telegram send updates to `url` with a new secret, kept in Redis for every worker."""
    secret = secrets.token_urlsafe(32)
    try:
        await bot.set_webhook(url, secret_token=secret)
    except TelegramUnauthorizedError as exc:
        raise TelegramSetupError("Telegram rejected ANSWERDESK_TELEGRAM_TOKEN.") from exc
    except TelegramAPIError as exc:
        raise TelegramSetupError(f"Telegram refused the webhook {url}: {exc.message}") from exc
    await redis.set(secret_key(prefix), secret)


class OncePerUpdate(BaseMiddleware):
    """Claims each update_id in Redis (SET NX EX 24 h): Telegram's redeliveries and a second
    worker's copy of the same update are dropped."""

    def __init__(self, redis: Redis, prefix: str) -> None:
        self._redis = redis
        self._prefix = prefix

    async def __call__(self, handler: Any, event: TelegramObject, data: dict[str, Any]) -> Any:
        if isinstance(event, Update):
            key = f"{self._prefix}:telegram:update:{event.update_id}"
            if not await self._redis.set(key, 1, nx=True, ex=UPDATE_TTL_S):
                log.info("dropped redelivered update %s", event.update_id)
                return None
        return await handler(event, data)


class TelegramService:
    def __init__(
        self,
        bot: Bot,
        manager: ConversationManager,
        redis: Redis,
        prefix: str,
        texts: TelegramTexts,
        team: TeamChat | None = None,
    ) -> None:
        """`team`: the operators' group, whose replies to customers' messages go to them."""
        self.bot = bot
        self._manager = manager
        self._team = team
        self._redis = redis
        self._prefix = prefix
        self.dispatcher = Dispatcher()
        self.dispatcher.update.outer_middleware(OncePerUpdate(redis, prefix))
        if team is not None:
            self.dispatcher.include_router(team_router(manager, team))
        self.dispatcher.include_router(telegram_router(manager, texts, team is not None))
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outbox: asyncio.Task[None] | None = None

    async def start(self) -> User:
        """Check the token, register the commands, start delivering operator messages."""
        try:
            me = await self.bot.get_me()
            await self.bot.set_my_commands(COMMANDS)
        except TelegramUnauthorizedError as exc:
            raise TelegramSetupError(
                "Telegram rejected ANSWERDESK_TELEGRAM_TOKEN (revoked or mistyped); "
                "get the current token from @BotFather."
            ) from exc
        except TelegramAPIError as exc:
            raise TelegramSetupError(f"Cannot reach Telegram: {exc}") from exc
        if self._team is not None:
            try:  # the operators' own menu in their group
                await self.bot.set_my_commands(
                    TEAM_COMMANDS, scope=BotCommandScopeChat(chat_id=self._team.chat)
                )
            except TelegramAPIError as exc:
                log.warning(
                    "could not set the commands of the team chat %s (is the bot in it?): %s",
                    self._team.chat,
                    exc,
                )
        self._outbox = asyncio.create_task(self._deliver_outbox(), name="telegram-outbox")
        log.info("Telegram bot @%s ready", me.username)
        return me

    async def stop(self) -> None:
        if self._outbox is not None:
            self._outbox.cancel()
            await asyncio.gather(self._outbox, return_exceptions=True)
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bot.session.close()

    async def poll(self) -> None:
        """Long polling until SIGINT/SIGTERM."""
        await self.bot.delete_webhook()
        await self.dispatcher.start_polling(self.bot, close_bot_session=False)

    async def webhook_secret(self) -> str | None:
        value = await self._redis.get(secret_key(self._prefix))
        return value.decode() if value else None

    def feed(self, update: dict[str, Any]) -> None:
        """Process a webhook update in the background (the webhook answers at once)."""
        parsed = Update.model_validate(update, context={"bot": self.bot})
        task = asyncio.create_task(self.dispatcher.feed_update(self.bot, parsed))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send_file(self, chat: int, message: OutboxMessage) -> None:
        """An operator's photo or file from the desk (`OutboxMessage.file`), with their words."""
        kept = await self._manager.files.get(message.session_id, message.file)
        if kept is None:  # erased meanwhile
            return
        upload = BufferedInputFile(kept.data, filename=kept.name)
        words = words_of(message.text) or None
        if kept.type in PHOTOS:
            try:
                await self.bot.send_photo(chat, upload, caption=words)
                return
            except TelegramBadRequest as exc:  # not a photo to Telegram (a long, thin one)
                log.info("sent as a document instead of a photo: %s", exc)
        await self.bot.send_document(chat, upload, caption=words)

    async def _deliver_outbox(self) -> None:
        """Operator messages to Telegram customers, each confirmed once sent; those not
        confirmed when Redis failed are sent again once it is back, and those a worker left
        unconfirmed when it stopped (a restart) are sent by another within two minutes."""
        consumer = f"{os.uname().nodename}-{os.getpid()}"
        handoff = self._manager.handoff
        unconfirmed, swept = False, -ABANDONED_S
        while True:
            try:
                if time.monotonic() - swept >= ABANDONED_S:  # those a stopped worker left
                    swept = time.monotonic()
                    messages = await handoff.outbox.abandoned(
                        "telegram", consumer, idle_ms=int(ABANDONED_S * 1000)
                    )
                else:
                    messages = await handoff.outbox.deliveries(
                        "telegram", consumer, block_ms=2000, unconfirmed=unconfirmed
                    )
                unconfirmed = False
                for message in messages:
                    await self._deliver(message)
                    await handoff.outbox.delivered("telegram", message.id)
            except StorageUnavailable as exc:
                log.warning("operator messages to Telegram wait for Redis: %s", exc)
                unconfirmed = True
                await asyncio.sleep(2)

    async def _deliver(self, message: OutboxMessage) -> None:
        chat = chat_id(message.session_id)
        if chat is None:
            return
        try:
            if message.typing:
                # Late (a worker that stopped left it, or Redis was away): the operator has
                # written since, or stopped, and "typing…" now would say otherwise.
                if time.time() - message.written_at < TYPING_FRESH_S:
                    await self.bot.send_chat_action(chat, ChatAction.TYPING)
            elif (source := copied_from(message)) is not None:
                await self.bot.copy_message(chat, *source)
            elif message.file:
                await self._send_file(chat, message)
            else:
                await self.bot.send_message(
                    chat, message.text, reply_markup=rating_keyboard(message)
                )
        except TelegramAPIError:
            log.exception("could not deliver an operator message to chat %s", chat)
