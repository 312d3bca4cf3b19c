"""The operators' Telegram group as an operator console. With ANSWERDESK_TELEGRAM_TEAM_CHAT set,
the bot posts each customer who waits for a person there, with the conversation so far and a
*Take* button, and everything the customer writes while waiting or talking to an operator
(adapters/telegram_team_chat.py). An operator answers by replying to one of those messages: the
reply goes to the customer, in whichever channel they wrote (web chat, Telegram). `/done` in a
reply, or the *Back to the assistant* button, hands the conversation back to the bot. Who takes
a conversation, here or at the operator desk, and when it goes back to the bot, is posted too.

Anyone in the group acts as an operator, under their Telegram first name and last initial: the
owner decides who is in it. `/here` and `/away` there say when an operator is there to answer
(as an open operator desk does), so that customers are told what to expect; `/waiting` posts
everyone who waits again. A customer who has their conversation erased has the bot's posts
about it deleted from the group too (operators' own replies stay: a bot may delete only its own
messages unless it is the group's admin).
"""

import time
from collections.abc import Awaitable, Callable

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command
from aiogram.types import (
    BotCommand,
    CallbackQuery,
    InaccessibleMessage,
    Message,
    User,
)

from adapters.telegram_files import described, fetched, kept_at
from adapters.telegram_team_chat import VIA, TeamChat
from bot import (
    ON_DUTY_S,
    ConversationError,
    ConversationManager,
)

# The team chat's command menu (Telegram shows it to the group's members only).
COMMANDS = [
    BotCommand(command="here", description="I am here to answer customers"),
    BotCommand(command="away", description="I have left"),
    BotCommand(command="waiting", description="Post every customer who waits again"),
    BotCommand(command="note", description="In reply to a customer's message: a note for the team"),
    BotCommand(
        command="saved",
        description="In reply to a customer's message: send a saved reply (alone: list them)",
    ),
    BotCommand(
        command="done", description="In reply to a customer's message: back to the assistant"
    ),
    BotCommand(command="help", description="How to answer customers here"),
]
HELP = (
    "How to answer customers here:\n"
    "- Reply to any of my messages about a customer to write to them (a waiting customer is "
    "then yours). Photos and files reach customers in Telegram; photos and PDF files reach "
    "the web chat too.\n"
    "- /note … in reply: a note for the team, which the customer does not see.\n"
    "- /saved TITLE in reply: send the team's saved reply of that title; /saved alone lists "
    "them (they are kept at the operator desk).\n"
    "- /done in reply, or Back to the assistant: hand the conversation back.\n"
    "- /here when you start, /away when you leave: customers are told whether someone is "
    "there.\n"
    "- /waiting: every customer who waits, posted again with a Take button."
)


def operator_name(user: User) -> str:
    """What customers and the figures call a Telegram operator: their first name and the
    initial of their last name ("Olga P."), as support teams usually sign."""
    first, last = user.first_name.strip(), (user.last_name or "").strip()
    name = f"{first} {last[0]}." if first and last else first
    return name or user.username or f"Telegram user {user.id}"


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
        present = await handoff.presence.present()
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
        await handoff.presence.on_duty(operator)
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
        was = await handoff.presence.off_duty(operator)
        gone = f"{operator} is away." if was else f"{operator} had not said /here."
        await message.reply(f"{gone} {await here_now()}")

    @router.message(Command("help"))
    async def help_(message: Message) -> None:
        await message.reply(HELP)

    async def saved_titles() -> str:
        replies = await manager.saved_replies.all()
        if not replies:
            return "The team has no saved replies yet; save them at the operator desk."
        titles = "\n".join(f"- {r.title}" for r in replies)
        return (
            f"Saved replies:\n{titles}\nReply to a customer's message with /saved TITLE to "
            "send one."
        )

    @router.message(Command("saved"), ~F.reply_to_message)
    async def saved(message: Message) -> None:
        await message.reply(await saved_titles())

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
        if command.split("@")[0] == "/saved":
            picked = await manager.saved_replies.find(rest) if rest.strip() else None
            if picked is None:
                unknown = f"No saved reply is called {rest.strip()!r}. " if rest.strip() else ""
                await message.reply(unknown + await saved_titles())
                return
            await to_customer(message, session_id, operator, picked.text)
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
                caption = message.caption or ""
                await manager.send_file(session_id, operator, *upload, caption, via=VIA)
            else:
                await handoff.send(session_id, operator, text, attachment, via=VIA)
        except ConversationError as exc:
            await message.reply(f"Not sent: {exc}")

    return router
