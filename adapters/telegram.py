"""Telegram: an aiogram Router over the conversation manager. Everything Telegram-specific lives
here: commands, streaming by message edits, splitting, HTML escaping, buttons, groups."""

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator
from contextlib import suppress
from dataclasses import dataclass

from aiogram import Bot, F, Router
from aiogram.enums import ChatAction, ChatType, ContentType, ParseMode
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import (
    CallbackQuery,
    Document,
    InlineKeyboardMarkup,
    Message,
    PhotoSize,
    ReplyParameters,
)
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration
from aiohttp import ClientError

from bot import (
    MAX_FILE_BYTES,
    BadFile,
    ConversationError,
    ConversationManager,
    DuplicateMessage,
    Inbound,
    InvalidMessage,
    OutboxMessage,
    RateLimited,
    Reply,
    ReplyChunk,
    ReplyEvent,
    UnknownReply,
)

log = logging.getLogger(__name__)

LIMIT = 4096  # Telegram's maximum message length, counted after entity parsing
EDIT_EVERY_S = 1.5


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


# What a customer sent besides words, as operators read it (Message.content_type -> words).
ATTACHMENTS = {
    "photo": "photo",
    "document": "file",
    "voice": "voice message",
    "video_note": "video message",
    "animation": "GIF",
}


def attachment(message: Message) -> str:
    """The kind of a message that is not text ("photo", "file invoice.pdf", "sticker")."""
    kind = str(ContentType(message.content_type).value)  # an enum member: its value
    named = ATTACHMENTS.get(kind, kind.replace("_", " "))
    if message.document and message.document.file_name:
        named += f" {message.document.file_name}"
    return named


def sent_from(said: Inbound) -> tuple[int, int] | None:
    """The Telegram chat and message of a customer's photo or file (`Inbound.attachment`)."""
    if not said.attachment or said.channel != "telegram" or not said.message_id:
        return None
    return _chat_message(said.message_id)


def copied_from(message: OutboxMessage) -> tuple[int, int] | None:
    """The team chat's chat and message of an operator's photo or file for the customer."""
    return _chat_message(message.attachment) if message.attachment else None


def kept_at(message: Message) -> str:
    """Where a message is, for `Inbound.attachment`'s and `OutboxMessage.attachment`'s readers."""
    return f"{message.chat.id}:{message.message_id}"


def described(message: Message) -> str:
    """A photo or file as the stored conversation tells it: "[photo] its caption"."""
    return f"[{attachment(message)}] {message.caption or ''}".strip()


async def fetched(message: Message) -> tuple[str, bytes] | None:
    """The photo or document of `message`, its name and content, to keep with the conversation
    (`bot.files`); None for other kinds (a voice message), one over the size limit, or one
    Telegram did not hand over."""
    item: PhotoSize | Document
    if message.photo:  # sizes of one photo, the largest last
        item, name = message.photo[-1], "photo.jpg"
    elif message.document:
        item, name = message.document, message.document.file_name or "file"
    else:
        return None
    if message.bot is None or (item.file_size or 0) > MAX_FILE_BYTES:
        return None
    try:
        data = await message.bot.download(item.file_id)
    except (TelegramAPIError, ClientError, TimeoutError) as exc:
        log.warning("could not fetch %s from Telegram: %s", name, exc)
        return None
    return (name, data.read()) if data is not None else None


def _chat_message(where: str) -> tuple[int, int]:
    chat, _, message = where.rpartition(":")
    return int(chat), int(message)


def split_text(text: str, limit: int = LIMIT) -> list[str]:
    """Parts of `text` whose HTML-escaped form fits `limit`, cut at paragraph, line, sentence or
    word boundaries (in that order of preference)."""
    parts: list[str] = []
    rest = text.strip()
    while len(html_decoration.quote(rest)) > limit:
        window = rest[:limit]
        while len(html_decoration.quote(window)) > limit:  # escaping made it longer
            window = window[: len(window) - (len(html_decoration.quote(window)) - limit)]
        cut = -1
        # A paragraph or line break is worth leaving a tenth of the message empty; a sentence
        # end, half of it; a space, anything.
        for pattern, fill in ((r"\n\s*\n", 0.9), (r"\n", 0.9), (r"(?<=[.!?])\s", 0.5), (r"\s", 0)):
            found = [m.end() for m in re.finditer(pattern, window)]
            if found and found[-1] >= limit * fill:
                cut = found[-1]
                break
        cut = cut if cut > 0 else len(window)
        parts.append(rest[:cut].strip())
        rest = rest[cut:].strip()
    if rest:
        parts.append(rest)
    return parts


def render(reply: Reply) -> list[str]:
    """HTML parts of a final reply, its FAQ sources in italics at the end. Suggested questions
    are left to their buttons (`reply_keyboard`)."""
    offered = {f"- {s.question}" for s in reply.suggestions}
    text = "\n".join(line for line in reply.text.split("\n") if line not in offered)
    parts = split_text(text)
    if reply.sources and reply.mode in ("faq", "grounded"):
        names = "; ".join(s.question for s in reply.sources)
        footer = f"\n\n<i>From our FAQ: {html_decoration.quote(names)}</i>"
        last = html_decoration.quote(parts[-1])
        if len(last) + len(footer) <= LIMIT:
            return [*map(html_decoration.quote, parts[:-1]), last + footer]
    return [html_decoration.quote(p) for p in parts]


def reply_keyboard(reply: Reply) -> InlineKeyboardMarkup | None:
    if not reply.reply_id or reply.state != "bot":
        return None
    builder = InlineKeyboardBuilder()
    # A suggested question's button asks it (`ask:` + its place; the text is the question).
    for i, suggestion in enumerate(reply.suggestions):
        builder.button(text=suggestion.question, callback_data=f"ask:{i}")
    builder.button(text="👍", callback_data=f"fb:up:{reply.reply_id}")
    builder.button(text="👎", callback_data=f"fb:down:{reply.reply_id}")
    builder.button(text="Talk to a human", callback_data="human")
    builder.adjust(*[1] * len(reply.suggestions), 2, 1)
    return builder.as_markup()


def rating_keyboard(message: OutboxMessage) -> InlineKeyboardMarkup | None:
    """👍/👎 under the message that ends a conversation with an operator: how did they do?"""
    if not message.rating_id:
        return None
    builder = InlineKeyboardBuilder()
    builder.button(text=f"👍 {message.operator} helped", callback_data=f"fb:up:{message.rating_id}")
    builder.button(text="👎", callback_data=f"fb:down:{message.rating_id}")
    return builder.as_markup()


class StreamedReply:
    """One reply in one chat: a first message as soon as there is text, edits at most every
    EDIT_EVERY_S seconds while it grows, then the final text (split if long)."""

    def __init__(self, bot: Bot, chat: int, reply_to: int | None) -> None:
        self._bot, self._chat = bot, chat
        self._reply = ReplyParameters(message_id=reply_to) if reply_to else None
        self._message_id: int | None = None
        self._shown = ""
        self._last_edit = 0.0

    async def partial(self, text: str) -> None:
        text = text.strip()
        if not text or text == self._shown or time.monotonic() - self._last_edit < EDIT_EVERY_S:
            return
        await self._show(html_decoration.quote(split_text(text)[0]) + " …")
        self._shown = text

    async def final(self, reply: Reply) -> None:
        if not reply.text:
            return  # a human has the conversation: the bot stays quiet
        parts = render(reply)
        keyboard = reply_keyboard(reply)
        for i, part in enumerate(parts):
            markup = keyboard if i == len(parts) - 1 else None
            if i == 0 and self._message_id is not None:
                await self._edit(part, markup)
            else:
                await self._bot.send_message(
                    self._chat,
                    part,
                    parse_mode=ParseMode.HTML,
                    reply_parameters=self._reply if i == 0 else None,
                    reply_markup=markup,
                )

    async def _show(self, html: str) -> None:
        if self._message_id is None:
            sent = await self._bot.send_message(
                self._chat, html, parse_mode=ParseMode.HTML, reply_parameters=self._reply
            )
            self._message_id = sent.message_id
        else:
            await self._edit(html, None)
        self._last_edit = time.monotonic()

    async def _edit(self, html: str, markup: InlineKeyboardMarkup | None) -> None:
        assert self._message_id is not None
        try:
            await self._bot.edit_message_text(
                text=html,
                chat_id=self._chat,
                message_id=self._message_id,
                parse_mode=ParseMode.HTML,
                reply_markup=markup,
            )
        except TelegramBadRequest as exc:
            if "message is not modified" not in str(exc):
                raise


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
