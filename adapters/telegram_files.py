"""Photos, files and other messages that are not text in Telegram: what operators are told of
them, where they are (to copy them between chats), and fetching one to keep with the
conversation (`bot.files`)."""

import logging

from aiogram.enums import ContentType
from aiogram.exceptions import TelegramAPIError
from aiogram.types import Document, Message, PhotoSize
from aiohttp import ClientError

from bot import MAX_FILE_BYTES, Inbound, OutboxMessage

log = logging.getLogger(__name__)

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
