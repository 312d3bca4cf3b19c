"""The operators' Telegram group as an operator console. With ANSWERDESK_TELEGRAM_TEAM_CHAT set,
the bot posts each customer who waits for a person there, with the conversation so far and a
*Take* button, and everything the customer writes while waiting or talking to an operator. An
operator answers by replying to one of those messages: the reply goes to the customer, in
whichever channel they wrote (web chat, Telegram). `/done` in a reply, or the *Back to the
assistant* button, hands the conversation back to the bot. Who takes a conversation, here or at
the operator desk, and when it goes back to the bot, is posted too.

Anyone in the group acts as an operator, under their Telegram first name and last initial: the
owner decides who is in it. `/here` and `/away` there say when an operator is there to answer
(as an open operator desk does), so that customers are told what to expect; `/waiting` posts
everyone who waits again. A customer who has their conversation erased has the bot's posts
about it deleted from the group too (operators' own replies stay: a bot may delete only its own
messages unless it is the group's admin).
"""

import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from contextlib import suppress
from typing import Any

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.exceptions import TelegramAPIError, TelegramBadRequest
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    BufferedInputFile,
    CallbackQuery,
    InaccessibleMessage,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    MessageId,
    ReplyParameters,
    User,
)
from redis.asyncio import Redis
from redis.exceptions import RedisError

from adapters.background import Background
from adapters.handoff_webhook import notification
from adapters.telegram import described, fetched, kept_at, sent_from
from bot import (
    ON_DUTY_S,
    ConversationError,
    ConversationManager,
    Inbound,
    SessionFiles,
    SessionInfo,
    SessionStore,
    StorageUnavailable,
    Turn,
    Waiting,
)

log = logging.getLogger(__name__)

LIMIT = 4096  # Telegram's maximum message length
DELETE_AT_ONCE = 100  # message ids per deleteMessages call, Telegram's maximum
ERASED = "(Deleted at the customer's request.)"
SHOWN_TURNS = 6  # of the conversation so far, in the notice of a waiting customer
TURN_CHARS = 400
TAKE = InlineKeyboardMarkup(
    inline_keyboard=[[InlineKeyboardButton(text="Take", callback_data="team:take")]]
)
# The team chat's command menu (Telegram shows it to the group's members only).
COMMANDS = [
    BotCommand(command="here", description="I am here to answer customers"),
    BotCommand(command="away", description="I have left"),
    BotCommand(command="waiting", description="Post every customer who waits again"),
    BotCommand(command="note", description="In reply to a customer's message: a note for the team"),
    BotCommand(
        command="done", description="In reply to a customer's message: back to the assistant"
    ),
    BotCommand(command="help", description="How to answer customers here"),
]
HELP = (
    "How to answer customers here:\n"
    "- Reply to any of my messages about a customer to write to them (a waiting customer is "
    "then yours). Photos and files reach customers in Telegram; the web chat shows text only.\n"
    "- /note … in reply: a note for the team, which the customer does not see.\n"
    "- /done in reply, or Back to the assistant: hand the conversation back.\n"
    "- /here when you start, /away when you leave: customers are told whether someone is "
    "there.\n"
    "- /waiting: every customer who waits, posted again with a Take button."
)
BACK = InlineKeyboardMarkup(
    inline_keyboard=[
        [InlineKeyboardButton(text="Back to the assistant", callback_data="team:back")]
    ]
)


def operator_name(user: User) -> str:
    """What customers and the figures call a Telegram operator: their first name and the
    initial of their last name ("Olga P."), as support teams usually sign."""
    first, last = user.first_name.strip(), (user.last_name or "").strip()
    name = f"{first} {last[0]}." if first and last else first
    return name or user.username or f"Telegram user {user.id}"


def transcript(turns: list[Turn]) -> str:
    """The last messages of a conversation, one line each, as the team chat shows them."""
    said = [t for t in turns if t.role != "system"][-SHOWN_TURNS:]
    lines = []
    for turn in said:
        who = {"user": "Customer", "assistant": "Assistant"}.get(turn.role, turn.operator)
        if turn.role == "note":
            who = f"Note by {turn.operator}"
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
        await self.post(session_id, line)
        if (source := sent_from(said)) is not None:
            chat, message_id = source
            await self._in_thread(
                session_id,
                lambda reply: self.bot.copy_message(
                    self.chat, chat, message_id, reply_parameters=reply
                ),
            )
        elif said.file and (kept := await self._files.get(session_id, said.file)) is not None:
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


def operator_command(
    handler: Callable[[Message, str], Awaitable[None]],
) -> Callable[[Message], Awaitable[None]]:
    """A team command, given the operator who sent it (`operator_name`); one whose storage
    fails says so, instead of leaving the operator unanswered."""

    async def handled(message: Message) -> None:
        if message.from_user is None:  # sent on behalf of a channel: no operator
            return
        try:
            await handler(message, operator_name(message.from_user))
        except ConversationError as exc:
            await message.reply(f"Not done: {exc}")

    return handled


def team_router(manager: ConversationManager, team: TeamChat) -> Router:
    """Operators' actions in the team chat. Messages there that are not about a customer's
    conversation pass on to the other routers (a mention still gets an FAQ answer)."""
    router = Router(name="answerdesk-team")
    in_team = F.chat.id == team.chat
    router.message.filter(in_team)
    handoff = manager.handoff

    async def about(message: Message | InaccessibleMessage | None) -> str | None:
        return None if message is None else await team.threads.session_of(message.message_id)

    async def replied_about(message: Message, bot: Bot) -> tuple[str, str]:
        """The conversation of the bot's message `message` replies to, and the operator who
        replied; else the message is the group's own talk, for the other handlers (SkipHandler)."""
        replied, me = message.reply_to_message, await bot.me()
        if replied is None or replied.from_user is None or replied.from_user.id != me.id:
            raise SkipHandler
        session_id = await about(replied)
        if session_id is None or message.from_user is None:
            raise SkipHandler
        return session_id, operator_name(message.from_user)

    async def hand_back(session_id: str, operator: str) -> str:
        """`operator` hands the conversation back (the team is told, as of any change of
        hands, by `TeamChat.changed`); what went wrong, if anything."""
        try:
            await handoff.release(session_id, operator)
        except ConversationError as exc:
            return str(exc)
        return ""

    async def pressed_about(query: CallbackQuery) -> str | None:
        """The conversation of the post whose button was pressed; None, and the operator told,
        when it is no longer known."""
        session_id = await about(query.message)
        if session_id is None:
            await query.answer("This conversation is no longer known.", show_alert=True)
        return session_id

    async def here_now() -> str:
        present = await handoff.present()
        if present:
            names = ", ".join(present)
            return f"Here now: {names}" + ("" if names.endswith(".") else ".")  # "Olga P."
        return (
            "No one is here now: customers who ask for a person are told it may take a while "
            "(or when the team is back, outside its hours)."
        )

    @router.message(Command("here"))
    @operator_command
    async def here(message: Message, operator: str) -> None:
        """An operator says they are there to answer customers, as an open desk does."""
        await handoff.on_duty(operator)
        hours = ON_DUTY_S // 3600
        waiting = await handoff.waiting_count()
        line = {0: "", 1: " 1 customer is waiting: /waiting shows them."}.get(
            waiting, f" {waiting} customers are waiting: /waiting shows them."
        )
        await message.reply(
            f"{operator} is here: customers who ask for a person are told someone will answer "
            f"soon. Send /away when you leave (this lasts {hours} hours at most). "
            f"{await here_now()}{line}"
        )

    @router.message(Command("away"))
    @operator_command
    async def away(message: Message, operator: str) -> None:
        was = await handoff.off_duty(operator)
        gone = f"{operator} is away." if was else f"{operator} had not said /here."
        await message.reply(f"{gone} {await here_now()}")

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.reply(HELP)

    @router.message(Command("waiting"))
    @operator_command
    async def waiting(message: Message, operator: str) -> None:
        """Every customer waiting for a person is posted again, first come first, each with a
        Take button (an operator who comes in finds them without scrolling back)."""
        calls = await handoff.in_line(time.time())
        if not calls:
            await message.reply("No customer is waiting for a person.")
            return
        await message.reply(f"Waiting for a person, first come first: {len(calls)}.")
        for call in calls:
            await team.notify(call)

    @router.callback_query(F.data == "team:take", F.message.chat.id == team.chat)
    async def take(query: CallbackQuery) -> None:
        if (session_id := await pressed_about(query)) is None:
            return
        operator = operator_name(query.from_user)
        try:
            await handoff.take(session_id, operator)
        except ConversationError as exc:
            await query.answer(str(exc), show_alert=True)
            return
        await query.answer(f"Conversation {session_id[:8]} is yours.")

    @router.callback_query(F.data == "team:back", F.message.chat.id == team.chat)
    async def back(query: CallbackQuery) -> None:
        if (session_id := await pressed_about(query)) is None:
            return
        wrong = await hand_back(session_id, operator_name(query.from_user))
        await query.answer(wrong or "Back with the assistant.", show_alert=bool(wrong))

    @router.message(F.text, F.reply_to_message)
    async def answer(message: Message, bot: Bot) -> None:
        """A reply to one of the bot's messages about a conversation goes to its customer (an
        operator who replies to a waiting customer takes them); anything else passes on."""
        session_id, operator = await replied_about(message, bot)
        text = (message.text or "").strip()
        command, _, rest = text.partition(" ")
        if command.split("@")[0] == "/done":
            if wrong := await hand_back(session_id, operator):
                await message.reply(wrong)
            return
        if command.split("@")[0] == "/note":
            try:  # TeamChat.noted posts it in the conversation's thread
                await handoff.note(session_id, operator, rest)
            except ConversationError as exc:
                await message.reply(f"Not noted: {exc}")
            return
        await to_customer(message, session_id, operator, text)

    @router.message(F.reply_to_message)
    async def not_text(message: Message, bot: Bot) -> None:
        """A photo, file or sticker in reply to a customer's message: copied to a customer in
        Telegram; a photo or PDF file reaches a web chat's customer too (kept with the
        conversation, `bot.files`)."""
        session_id, operator = await replied_about(message, bot)
        await to_customer(message, session_id, operator, described(message), kept_at(message))

    async def to_customer(
        message: Message, session_id: str, operator: str, text: str, attachment: str = ""
    ) -> None:
        """The operator's reply goes to the customer: it takes a waiting customer, and is not
        sent when a colleague has the conversation."""
        try:
            info = await manager.session(session_id, with_turns=False)
            web = bool(attachment) and info.channel != "telegram"  # it shows what is kept
            upload = await fetched(message) if web else None
            if web and upload is None:
                await message.reply(
                    "Only text, photos and PDF files reach a customer in the web chat; "
                    "this was not sent."
                )
                return
            if info.state == "pending_human":
                info = await handoff.take(session_id, operator)
            if info.state == "human" and info.operator != operator:
                await message.reply(
                    f"{info.operator} has this conversation; your message was not sent."
                )
                return
            if upload is not None:
                await manager.send_file(session_id, operator, *upload, message.caption or "")
            else:
                await handoff.send(session_id, operator, text, attachment)
        except ConversationError as exc:
            await message.reply(f"Not sent: {exc}")

    return router
