"""How a reply looks in Telegram: HTML-escaped, split at Telegram's length limit, streamed by
editing one message, with its FAQ sources, suggested questions and 👍/👎 as buttons."""

import re
import time

from aiogram import Bot
from aiogram.enums import ParseMode
from aiogram.exceptions import TelegramBadRequest
from aiogram.types import InlineKeyboardMarkup, ReplyParameters
from aiogram.utils.keyboard import InlineKeyboardBuilder
from aiogram.utils.text_decorations import html_decoration

from bot import OutboxMessage, Reply

LIMIT = 4096  # Telegram's maximum message length, counted after entity parsing
EDIT_EVERY_S = 1.5


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
