"""Telegram: an aiogram Router over the conversation manager: commands, customers' messages and
buttons, groups. How replies look there: adapters/telegram_replies.py; photos and files:
adapters/telegram_files.py."""

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass

from aiogram import Bot, F, Router
from aiogram.enums import ChatAction, ChatType, ParseMode
from aiogram.exceptions import TelegramAPIError
from aiogram.filters import Command
from aiogram.types import (
    CallbackQuery,
    Message,
)
from aiogram.utils.text_decorations import html_decoration

from adapters.telegram_files import attachment, described, fetched, kept_at
from adapters.telegram_replies import StreamedReply
from bot import (
    BadFile,
    ConversationError,
    ConversationManager,
    DuplicateMessage,
    Inbound,
    InvalidMessage,
    RateLimited,
    ReplyChunk,
    ReplyEvent,
    UnknownReply,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TelegramTexts:
    greeting: str
    help: str
    only_text: str = "Sorry, I can only read text messages. Please type your question."
    busy: str = "Sorry, I'm having trouble right now. Please try again in a minute."
    thanks_for_feedback: str = "Thank you for the feedback!"
    deleted: str = (
        "Done: I have deleted our conversation and everything I kept of it. The messages stay "
        "in this Telegram chat until you delete them here."
    )


def session_id(chat_id: int) -> str:
    return f"tg{chat_id}"


def chat_id(session: str) -> int | None:
    """The Telegram chat of an answerdesk session id, or None if it is not a Telegram one."""
    match = re.fullmatch(r"tg(-?\d+)", session)
    return int(match.group(1)) if match else None


def telegram_router(
    manager: ConversationManager, texts: TelegramTexts, team_sees_files: bool = False
) -> Router:
    """`team_sees_files`: the operators' team chat is on, where a customer's photos and files
    go while they wait for or talk to a person (adapters/telegram_team.py)."""
    router = Router(name="answerdesk")
    # In groups the bot answers only when mentioned or replied to.
    private = F.chat.type == ChatType.PRIVATE

    async def answer(
        message: Message,
        bot: Bot,
        text: str,
        sent: str = "",
        upload: tuple[str, bytes] | None = None,
    ) -> None:
        """`sent`: what the message is, if not text (`attachment`); `upload`: its photo or
        file to keep with the conversation (`fetched`)."""
        chat = message.chat.id
        inbound = Inbound(
            session_id=session_id(chat),
            text=text,
            channel="telegram",
            user_id=str(message.from_user.id) if message.from_user else None,
            message_id=kept_at(message),
            language=message.from_user.language_code if message.from_user else None,
            attachment=sent,
        )
        in_group = message.chat.type != ChatType.PRIVATE
        events = manager.handle(inbound) if upload is None else kept(inbound, *upload)
        await reply_in(bot, chat, inbound, message.message_id if in_group else None, events)

    async def kept(said: Inbound, name: str, data: bytes) -> AsyncIterator[ReplyEvent]:
        """The reply to `said`, whose photo or file is kept for the operator desk; one of a
        kind not kept (a Word file) reaches operators only in the team chat."""
        try:
            reply = await manager.attach(said, name, data)
        except BadFile as exc:
            log.info("not kept with conversation %s: %s", said.session_id, exc)
            async for event in manager.handle(said):
                yield event
            return
        yield reply

    async def reply_in(
        bot: Bot,
        chat: int,
        inbound: Inbound,
        reply_to: int | None,
        events: AsyncIterator[ReplyEvent] | None = None,
    ) -> None:
        """Answer `inbound` in `chat` (with `events`, its reply, when it is not simply
        handled), streaming (as a reply to `reply_to`, in groups)."""
        out = StreamedReply(bot, chat, reply_to)
        typing = asyncio.create_task(bot.send_chat_action(chat, ChatAction.TYPING))
        try:
            generated = ""
            async for event in events or manager.handle(inbound):
                if isinstance(event, ReplyChunk):
                    generated += event.text
                    await out.partial(generated)
                else:
                    await out.final(event)
        except DuplicateMessage:
            log.info("dropped a redelivered message %s", inbound.message_id)
        except (InvalidMessage, RateLimited) as exc:
            await bot.send_message(chat, html_decoration.quote(str(exc)), parse_mode=ParseMode.HTML)
        except ConversationError:
            log.exception("could not answer in chat %s", chat)
            await bot.send_message(chat, texts.busy)
        finally:
            with suppress(TelegramAPIError):
                await typing

    @router.message(Command("start"))
    async def start(message: Message) -> None:
        await message.answer(texts.greeting)

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.answer(texts.help)

    @router.message(Command("delete"), private)
    async def delete(message: Message) -> None:
        """The customer erases the conversation: everything answerdesk kept of it (bot.erasure).
        Private chats only: a group's conversation is not one member's to delete."""
        try:
            await manager.erase(session_id(message.chat.id))
        except ConversationError:
            log.exception("could not delete the conversation of chat %s", message.chat.id)
            await message.answer(texts.busy)
            return
        await message.answer(texts.deleted)

    @router.message(Command("teamchat"), ~private)
    async def team_chat(message: Message) -> None:
        """How an owner learns the id of the operators' group (adapters/telegram_team.py)."""
        await message.reply(
            f"This chat's id is {message.chat.id}: ANSWERDESK_TELEGRAM_TEAM_CHAT="
            f"{message.chat.id} makes it the operators' chat, where customers who wait for a "
            "person are posted and answered."
        )

    @router.message(F.text, private)
    async def private_text(message: Message, bot: Bot) -> None:
        await answer(message, bot, message.text or "")

    @router.message(F.text)
    async def group_text(message: Message, bot: Bot) -> None:
        me = await bot.me()
        mention = f"@{me.username}"
        replied = message.reply_to_message and message.reply_to_message.from_user
        to_me = bool(replied and replied.id == me.id)
        text = message.text or ""
        if mention.lower() in text.lower():
            text = re.sub(re.escape(mention), "", text, flags=re.IGNORECASE).strip()
            to_me = True
        if to_me and text:
            await answer(message, bot, text)

    @router.message(private)
    async def not_text(message: Message, bot: Bot) -> None:
        """A photo, file or voice message: the assistant reads only text, but a person the
        customer waits for or talks to sees it in the team chat, and a photo or PDF file at
        the operator desk too."""
        if team_sees_files:
            with suppress(ConversationError):  # unknown: answered as with no person
                info = await manager.session(session_id(message.chat.id), with_turns=False)
                if info.state != "bot":
                    upload = await fetched(message)
                    await answer(message, bot, described(message), attachment(message), upload)
                    return
        await message.answer(texts.only_text)

    @router.callback_query(F.data.startswith("fb:"))
    async def feedback(query: CallbackQuery) -> None:
        _, rating, reply_id = (query.data or "").split(":", 2)
        chat = query.message.chat.id if query.message else None
        if chat is None or rating not in ("up", "down"):
            await query.answer()
            return
        try:
            await manager.feedback.rate(session_id(chat), reply_id, rating)  # type: ignore[arg-type]
        except UnknownReply:
            await query.answer("That answer is too old to rate.")
            return
        await query.answer(texts.thanks_for_feedback)

    @router.callback_query(F.data.startswith("ask:"))
    async def ask_suggested(query: CallbackQuery, bot: Bot) -> None:
        """A suggested question's button: ask it, as if the customer had typed it."""
        await query.answer()
        message = query.message
        markup = getattr(message, "reply_markup", None)
        buttons = [b for row in (markup.inline_keyboard if markup else []) for b in row]
        question = next((b.text for b in buttons if b.callback_data == query.data), None)
        if message is None or question is None:
            return
        chat = message.chat.id
        inbound = Inbound(
            session_id=session_id(chat),
            text=question,
            channel="telegram",
            user_id=str(query.from_user.id),
            message_id=f"{chat}:ask:{query.id}",
        )
        await reply_in(bot, chat, inbound, None)

    @router.callback_query(F.data == "human")
    async def human(query: CallbackQuery, bot: Bot) -> None:
        await query.answer()
        if query.message is None:
            return
        chat = query.message.chat.id
        reply = await manager.ask(
            Inbound(session_id(chat), "/human", channel="telegram", user_id=str(query.from_user.id))
        )
        if reply.text:
            await bot.send_message(
                chat, html_decoration.quote(reply.text), parse_mode=ParseMode.HTML
            )

    return router
