"""The bot's posts in the operators' Telegram group (ANSWERDESK_TELEGRAM_TEAM_CHAT): each customer
who waits for a person, with the conversation so far and a *Take* button; everything the
customer writes while waiting or talking to an operator, as a reply to the latest post about
them (a thread per conversation), with their photos and files; who took a conversation and when
it went back to the assistant; operators' notes. A customer who has their conversation erased
has the bot's posts about it deleted (operators' own replies stay: a bot may delete only its
own messages unless it is the group's admin). What operators do there: adapters/telegram_team.py.
"""

import logging
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any

from aiogram import Bot
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.types import (
    BufferedInputFile,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageId,
    ReplyParameters,
)
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.background import Background
from adapters.handoff_webhook import notification
from adapters.telegram_files import sent_from
from bot import (
    ConversationError,
    Inbound,
    SessionFiles,
    SessionInfo,
    SessionStore,
    StorageUnavailable,
    Turn,
    Waiting,
)

log = logging.getLogger(__name__)

VIA = "team chat"  # what operators write here, as `HandoffDesk.send` is told

LIMIT = 4096  # Telegram's maximum message length
DELETE_AT_ONCE = 100  # message ids per deleteMessages call, Telegram's maximum
ERASED = "(Deleted at the customer's request.)"
SHOWN_TURNS = 6  # of the conversation so far, in the notice of a waiting customer
TURN_CHARS = 400
TAKE = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="Take", callback_data="team:take")]]
)
BACK = InlineKeyboardMarkup(
    inline_keyboard=[
        [InlineKeyboardButton(text="Back to the assistant", callback_data="team:back")]
    ]
)


def transcript(turns: list[Turn]) -> str:
    """The last messages of a conversation, one line each, as the team chat shows them."""
    said = [t for t in turns if t.role != "system"][-SHOWN_TURNS:]
    lines = []
    for turn in said:
        who = {"user": "Customer", "assistant": "Assistant"}.get(turn.role, turn.operator)
        if turn.role == "note":
            who = f"Note by {turn.operator}" if turn.operator else "Note"
        text = " ".join(turn.text.split())
        cut = text if len(text) <= TURN_CHARS else text[: TURN_CHARS - 1] + "…"
        lines.append(f"{who or 'Operator'}: {cut}")
    return "\n".join(lines)


class TeamThreads:
    """Which conversation each of the bot's messages in the team chat is about (Redis, so that
    any worker can read an operator's reply), and the latest message of each conversation, to
    which the next one replies."""

    def __init__(self, redis: Redis, prefix: str, ttl_s: int) -> None:
        self._redis, self._prefix, self._ttl_s = redis, prefix, ttl_s

    def _message(self, message_id: int) -> str:
        return f"{self._prefix}:telegram:team:message:{message_id}"

    def _latest(self, session_id: str) -> str:
        return f"{self._prefix}:telegram:team:latest:{session_id}"

    def _notice(self, session_id: str) -> str:
        return f"{self._prefix}:telegram:team:notice:{session_id}"

    def _posts(self, session_id: str) -> str:
        return f"{self._prefix}:telegram:team:posts:{session_id}"

    async def noticed(self, session_id: str, message_id: int) -> None:
        """`message_id` is the post, with a Take button, that says the customer waits."""
        await self._redis.set(self._notice(session_id), message_id, ex=self._ttl_s)

    async def notice(self, session_id: str) -> int | None:
        """The latest post that said the customer waits, if its Take button is still there
        (reading it takes it)."""
        value = await self._redis.getdel(self._notice(session_id))
        return int(value) if value else None

    async def remember(self, message_id: int, session_id: str) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._message(message_id), session_id, ex=self._ttl_s)
            pipe.set(self._latest(session_id), message_id, ex=self._ttl_s)
            pipe.rpush(self._posts(session_id), message_id)
            pipe.expire(self._posts(session_id), self._ttl_s)
            await pipe.execute()

    async def forget(self, session_id: str) -> list[int]:
        """The posts about the conversation, oldest first, which are no longer about it."""
        posts = [int(i) for i in await self._redis.lrange(self._posts(session_id), 0, -1)]
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in [
                self._posts(session_id),
                self._latest(session_id),
                self._notice(session_id),
            ]:
                pipe.delete(key)
            for message_id in posts:
                pipe.delete(self._message(message_id))
            await pipe.execute()
        return posts

    async def session_of(self, message_id: int) -> str | None:
        try:
            value = await self._redis.get(self._message(message_id))
        except RedisError as exc:
            raise StorageUnavailable(f"Cannot read the team chat's threads: {exc}") from exc
        return value.decode() if value else None

    async def latest(self, session_id: str) -> int | None:
        value = await self._redis.get(self._latest(session_id))
        return int(value) if value else None


class TeamChat:
    """A `bot.HandoffNotifier` that writes into the operators' Telegram group. Close it with
    `aclose`, which lets messages in flight go out first."""

    def __init__(
        self,
        bot: Bot,
        chat: int,
        sessions: SessionStore,
        threads: TeamThreads,
        desk_url: str | None = None,
        on_result: Callable[[str], None] | None = None,
    ) -> None:
        """`on_result`: told "sent" or "failed" for each notice and customer message."""
        self.bot, self.chat, self.threads = bot, chat, threads
        self._sessions = sessions
        self._files = SessionFiles(sessions)
        self._desk_url = desk_url
        self._on_result = on_result
        self._background = Background()

    def waiting(self, call: Waiting) -> None:
        self._spawn(self.notify(call))

    def wrote(self, info: SessionInfo, said: Inbound) -> None:
        who = f"with {info.operator}" if info.state == "human" else "waiting"
        line = f"Customer ({info.session_id[:8]}, {who}): {said.text}"
        self._spawn(self._wrote(info.session_id, line, said))

    def changed(self, info: SessionInfo, note: str) -> None:
        """Who took a conversation, here or at the desk, and when it went back to the bot."""
        sid = info.session_id[:8]
        if info.state == "human":
            text = (
                f"{info.operator} has conversation {sid}. Reply to its messages here to write to "
                "the customer; /done in a reply hands it back to the assistant."
            )
            self._spawn(self.post(info.session_id, text, BACK))
            self._spawn(self._untake(info.session_id))
        else:
            self._spawn(
                self.post(
                    info.session_id, f"Conversation {sid} is back with the assistant ({note})."
                )
            )

    def noted(self, info: SessionInfo, note: Turn) -> None:
        """A note on the conversation, from the desk or from here (where it confirms /note)."""
        text = f"Note by {note.operator} on {info.session_id[:8]}: {note.text}"
        self._spawn(self.post(info.session_id, text))

    def answered(self, info: SessionInfo, said: Turn, via: str) -> None:
        """What an operator wrote to the customer from the desk (with its photo or file), so
        that colleagues here read the whole conversation; replies written here are here."""
        if via == VIA:
            return
        line = (
            f"{said.operator} to the customer ({info.session_id[:8]}, from the desk): {said.text}"
        )
        self._spawn(self._said(info.session_id, line, said.file or ""))

    def erased(self, session_id: str) -> None:
        self._spawn(self._erase(session_id))

    async def post(
        self, session_id: str, text: str, markup: InlineKeyboardMarkup | None = None
    ) -> int:
        """`text` about a conversation, as a reply to the latest message about it; operators'
        replies to it reach the customer."""
        return await self._in_thread(
            session_id,
            lambda reply: self.bot.send_message(
                self.chat, text[:LIMIT], reply_parameters=reply, reply_markup=markup
            ),
        )

    async def _in_thread(
        self,
        session_id: str,
        send: Callable[[ReplyParameters | None], Awaitable[Message | MessageId]],
    ) -> int:
        """Sends (`send`) a message about the conversation as a reply to the latest one about
        it, and remembers it: a reply to it is about the conversation too."""
        latest = await self.threads.latest(session_id)
        reply = ReplyParameters(message_id=latest, allow_sending_without_reply=True)
        sent = await send(reply if latest else None)
        await self.threads.remember(sent.message_id, session_id)
        return sent.message_id

    async def _wrote(self, session_id: str, line: str, said: Inbound) -> None:
        """What the customer wrote, and under it the photo or file they sent: copied from their
        Telegram chat, or uploaded from the web chat's (`bot.files`)."""
        if (source := sent_from(said)) is None:
            await self._said(session_id, line, said.file)
            return
        await self.post(session_id, line)
        chat, message_id = source
        await self._in_thread(
            session_id,
            lambda reply: self.bot.copy_message(
                self.chat, chat, message_id, reply_parameters=reply
            ),
        )

    async def _said(self, session_id: str, line: str, file: str) -> None:
        """`line` about the conversation, and under it the photo or file `file` kept with it."""
        await self.post(session_id, line)
        if file and (kept := await self._files.get(session_id, file)) is not None:
            upload = BufferedInputFile(kept.data, filename=kept.name)
            await self._in_thread(
                session_id,
                lambda reply: self.bot.send_document(self.chat, upload, reply_parameters=reply),
            )

    async def aclose(self, grace_s: float = 5.0) -> None:
        await self._background.aclose(grace_s)

    async def notify(self, call: Waiting) -> None:
        """Posts that the customer waits, with the conversation so far and a Take button (which
        goes from the customer's earlier post of that kind)."""
        await self._untake(call.session_id)
        info = await self._sessions.info(call.session_id, with_turns=True)
        text = notification(call, self._desk_url)["text"]
        if info.page:
            text += f" They are on the page {info.page}"
        so_far = transcript(info.turns)
        hint = "Tap Take, or reply to this message to answer the customer."
        body = f"{text}\n\n{so_far}\n\n{hint}" if so_far else f"{text}\n\n{hint}"
        await self.threads.noticed(call.session_id, await self.post(call.session_id, body, TAKE))

    async def _erase(self, session_id: str) -> None:
        """The customer had the conversation erased: the bot's posts about it go. Telegram lets
        a bot delete its messages for 48 hours only; older ones are emptied instead."""
        posts = await self.threads.forget(session_id)
        if not posts:
            return
        try:
            for start in range(0, len(posts), DELETE_AT_ONCE):
                await self.bot.delete_messages(self.chat, posts[start : start + DELETE_AT_ONCE])
        except TelegramBadRequest:
            for message_id in posts:
                with suppress(TelegramBadRequest):  # deleted after all
                    await self.bot.edit_message_text(
                        ERASED, chat_id=self.chat, message_id=message_id
                    )
        await self.bot.send_message(
            self.chat,
            f"Conversation {session_id[:8]} was deleted at the customer's request, and with it "
            f"the {len(posts)} messages about it here.",
        )

    async def _untake(self, session_id: str) -> None:
        """Taken: the Take button goes from the post that said the customer waits."""
        if (notice := await self.threads.notice(session_id)) is not None:
            with suppress(TelegramBadRequest):  # deleted, or too old to edit
                await self.bot.edit_message_reply_markup(
                    chat_id=self.chat, message_id=notice, reply_markup=None
                )

    def _spawn(self, work: Coroutine[Any, Any, object]) -> None:
        async def logged() -> None:
            try:
                await work
            except (TelegramAPIError, ConversationError, RedisError):
                log.exception("could not write to the operators' Telegram chat")
                result = "failed"
            else:
                result = "sent"
            if self._on_result is not None:
                self._on_result(result)

        self._background.spawn(logged())
