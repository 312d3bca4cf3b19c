"""Telegram with the real aiogram Dispatcher and Bot, the real model and Redis, against a fake
Bot API server (tests/fake_telegram.py) reached through aiogram's custom-server setting."""

import asyncio
import functools
import html
import json
import os
import re
import signal
import subprocess
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from pydantic import ValidationError

from adapters.settings import Settings
from knowledge import read_entries, sample_faq_path
from tests.fake_telegram import BOT_USER, FakeTelegram, user
from tests.pictures import png
from tests.server import BIN, Server

ADMIN = {"authorization": "Bearer tg-test-admin"}
OPERATORS = -1001234567890  # the operators' Telegram group, told by the handoff webhook
TEAM = -1009876543210  # the operators' Telegram group the bot itself works in
PARAGRAPH = (
    "Part {n} of our care guide: wash at 30 degrees <not hotter> & dry flat; *never* "
    "tumble_dry wool. Keep zips closed, brush off mud first and re-proof once a season. "
)
LONG_ANSWER = "\n\n".join(
    "".join(PARAGRAPH.format(n=n) for _ in range(4)).strip() for n in range(1, 17)
)


@pytest.fixture(scope="module")
def faq_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [e.to_dict() for e in read_entries(sample_faq_path())]
    entries.append(
        {
            "id": "care-guide",
            "question": "How do I care for my outdoor clothing?",
            "answer": LONG_ANSWER,
            "alt_questions": ["care guide for jackets"],
            "tags": ["products"],
        }
    )
    path = tmp_path_factory.mktemp("tg-faq") / "faq.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in entries) + "\n")
    return path


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[FakeTelegram]:
    server = await FakeTelegram().start()
    yield server
    await server.stop()


@pytest.fixture(scope="module")
async def webhook(
    tmp_path_factory: pytest.TempPathFactory, fake: FakeTelegram, faq_file: Path
) -> AsyncIterator[Server]:
    """`answerdesk serve` with a Telegram token: webhook mode. (Started from a thread: the fake
    Bot API it talks to runs on this event loop.)"""
    running = Server(
        tmp_path_factory.mktemp("tg-webhook"),
        extra_env={
            "ANSWERDESK_TELEGRAM_TOKEN": fake.token,
            "ANSWERDESK_TELEGRAM_API_URL": fake.url,
            "ANSWERDESK_FAQ_FILE": str(faq_file),
            "ANSWERDESK_ADMIN_TOKEN": "tg-test-admin",
            # The operators' Telegram group, told of each customer who waits for a person.
            "ANSWERDESK_HANDOFF_WEBHOOK_URL": (
                f"{fake.url}/bot{fake.token}/sendMessage?chat_id={OPERATORS}"
            ),
            "ANSWERDESK_TELEGRAM_TEAM_CHAT": str(TEAM),
        },
    )
    await asyncio.to_thread(running.start)
    result = await asyncio.to_thread(
        running.cli, "telegram", "set-webhook", f"{running.url}/telegram/webhook"
    )
    assert result.returncode == 0, result.stderr
    yield running
    await asyncio.to_thread(running.stop)


def secret(fake: FakeTelegram) -> str:
    return str(fake.sent("setWebhook")[-1]["secret_token"])


async def get(url: str, **kwargs: Any) -> Any:
    async with httpx.AsyncClient(timeout=30) as client:
        return (await client.get(url, **kwargs)).json()


async def turns(server: Server, chat: int) -> list[dict[str, Any]]:
    """The chat's stored conversation, as operators see it (the web API serves web sessions)."""
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.get(f"{server.url}/admin/sessions/tg{chat}", headers=ADMIN)
    return [] if r.status_code == 404 else list(r.json()["turns"])


async def post_update(server: Server, update: dict[str, Any], token: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=30) as client:
        return await client.post(
            f"{server.url}/telegram/webhook",
            json=update,
            headers={"X-Telegram-Bot-Api-Secret-Token": token},
        )


def texts(fake: FakeTelegram, chat: int) -> list[str]:
    """Everything the bot showed in `chat`: sent messages and edits, in order."""
    return [
        html.unescape(str(c.params["text"]))
        for c in fake.calls
        if c.method in ("sendMessage", "editMessageText") and c.params.get("chat_id") == str(chat)
    ]


class TagCheck(HTMLParser):
    """Telegram's HTML: only known tags, balanced, and text entities that decode."""

    ALLOWED: ClassVar[set[str]] = {"b", "i", "u", "s", "a", "code", "pre", "blockquote"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=False)
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        assert tag in self.ALLOWED, f"<{tag}> is not Telegram HTML"
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"

    def handle_data(self, data: str) -> None:
        assert "<" not in data and ">" not in data


def valid_telegram_html(text: str) -> bool:
    check = TagCheck()
    check.feed(text)
    check.close()
    return not check.stack and not re.search(r"&(?!(amp|lt|gt|quot);)", text)


async def test_start_registers_commands_and_the_webhook(
    webhook: Server, fake: FakeTelegram
) -> None:
    [commands, team] = fake.sent("setMyCommands")[-2:]
    expected = ["start", "help", "reset", "human", "delete"]
    assert [c["command"] for c in commands["commands"]] == expected
    # The operators' group has its own menu.
    assert team["scope"] == {"type": "chat", "chat_id": TEAM}
    assert [c["command"] for c in team["commands"]] == [
        "here",
        "away",
        "waiting",
        "note",
        "saved",
        "done",
        "help",
    ]
    assert fake.sent("setWebhook")[-1]["url"] == f"{webhook.url}/telegram/webhook"
    assert len(secret(fake)) >= 32


async def test_an_faq_question_is_answered_through_the_webhook(
    webhook: Server, fake: FakeTelegram
) -> None:
    update = fake.update(message=fake.message("how do I reset my password?", chat=555))
    r = await post_update(webhook, update, secret(fake))
    assert r.status_code == 200
    await fake.wait_for(lambda: fake.sent("sendMessage", 555))
    [sent] = fake.sent("sendMessage", 555)
    assert 'Click "Sign in", then "Forgot password?"' in html.unescape(sent["text"])
    assert "<i>From our FAQ: How do I reset my password?</i>" in sent["text"]
    assert sent["parse_mode"] == "HTML"
    buttons = [b for row in sent["reply_markup"]["inline_keyboard"] for b in row]
    assert [b["text"] for b in buttons] == ["👍", "👎", "Talk to a human"]
    assert fake.sent("sendChatAction", 555)[0]["action"] == "typing"


async def test_a_wrong_or_missing_secret_is_rejected(webhook: Server, fake: FakeTelegram) -> None:
    update = fake.update(message=fake.message("how long does shipping take?", chat=560))
    assert (await post_update(webhook, update, "wrong-secret")).status_code == 401
    async with httpx.AsyncClient(timeout=30) as client:
        r = await client.post(f"{webhook.url}/telegram/webhook", json=update)
    assert r.status_code == 401
    malformed = {"update_id": "x", "message": {"text": "my card number is 4111"}}
    assert (await post_update(webhook, malformed, secret(fake))).status_code == 400
    assert await turns(webhook, 560) == [] and not fake.sent("sendMessage", 560)
    # Ignored and logged: what is wrong, never what the update said.
    [logged] = [line for line in webhook.log().splitlines() if "malformed Telegram" in line]
    assert "update_id: Input should be a valid integer" in logged and "4111" not in logged


async def test_an_update_delivered_3_times_is_answered_once(
    webhook: Server, fake: FakeTelegram
) -> None:
    update = fake.update(message=fake.message("What are your opening hours?", chat=561))
    for _ in range(3):
        assert (await post_update(webhook, update, secret(fake))).status_code == 200
    await fake.wait_for(lambda: fake.sent("sendMessage", 561))
    assert [t["role"] for t in await turns(webhook, 561)] == ["user", "assistant"]
    assert len(fake.sent("sendMessage", 561)) == 1


async def test_a_photo_gets_the_polite_text_and_no_answer(
    webhook: Server, fake: FakeTelegram
) -> None:
    photo = [{"file_id": "AgADBAAD", "file_unique_id": "AQADBA", "width": 90, "height": 90}]
    update = fake.update(message=fake.message(chat=562, photo=photo))
    await post_update(webhook, update, secret(fake))
    await fake.wait_for(lambda: fake.sent("sendMessage", 562))
    assert texts(fake, 562) == ["Sorry, I can only read text messages. Please type your question."]
    assert await turns(webhook, 562) == []


async def test_a_10000_character_reply_arrives_as_3_valid_html_messages(
    webhook: Server, fake: FakeTelegram
) -> None:
    assert len(LONG_ANSWER) >= 10_000
    update = fake.update(message=fake.message("How do I care for my outdoor clothing?", chat=563))
    await post_update(webhook, update, secret(fake))
    # The last part carries the buttons.
    await fake.wait_for(lambda: any("reply_markup" in m for m in fake.sent("sendMessage", 563)))
    assert len(fake.sent("sendMessage", 563)) == 3
    parts = [str(p["text"]) for p in fake.sent("sendMessage", 563)]
    assert all(len(p) <= 4096 and valid_telegram_html(p) for p in parts)
    body = "\n\n".join(html.unescape(p) for p in parts)
    body, footer = body.split("\n\n<i>From our FAQ: ")
    assert footer == "How do I care for my outdoor clothing?</i>"
    assert re.sub(r"\s+", " ", body) == re.sub(r"\s+", " ", LONG_ANSWER)
    assert "reply_markup" in fake.sent("sendMessage", 563)[-1]  # buttons under the last part


async def test_a_429_on_an_edit_is_waited_out_and_the_final_text_arrives(
    webhook: Server, fake: FakeTelegram
) -> None:
    fake.rate_limit_next["editMessageText"] = 1
    update = fake.update(message=fake.message("can I pay later", chat=564))
    await post_update(webhook, update, secret(fake))

    async def answered() -> bool:
        return len(await turns(webhook, 564)) == 2 and bool(fake.sent("editMessageText", 564))

    await fake.wait_for(answered, within=120)
    final = (await turns(webhook, 564))[1]
    assert final["mode"] == "grounded"

    # The edit that got the 429 is recorded too: wait for the one sent after the wait.
    def retried() -> bool:
        edits = fake.sent("editMessageText", 564)
        return len(edits) >= 2 and final["text"] in texts(fake, 564)[-1]

    await fake.wait_for(retried, within=30)
    edits = fake.sent("editMessageText", 564)
    assert edits[-1]["message_id"] == edits[0]["message_id"]
    assert fake.rate_limit_next["editMessageText"] == 0  # the 429 was served, then retried


async def test_feedback_buttons_are_stored(webhook: Server, fake: FakeTelegram) -> None:
    update = fake.update(message=fake.message("Which countries do you ship to?", chat=565))
    await post_update(webhook, update, secret(fake))
    await fake.wait_for(lambda: fake.sent("sendMessage", 565))
    [sent] = fake.sent("sendMessage", 565)
    down = sent["reply_markup"]["inline_keyboard"][0][1]["callback_data"]
    callback = {
        "id": "cb-565",
        "from": user(565),
        "message": {**fake.message(chat=565), "from": BOT_USER, "text": "…"},
        "chat_instance": "ci-565",
        "data": down,
    }
    await post_update(webhook, fake.update(callback_query=callback), secret(fake))
    await fake.wait_for(lambda: fake.sent("answerCallbackQuery"))
    assert fake.sent("answerCallbackQuery")[-1]["text"] == "Thank you for the feedback!"
    items = await get(f"{webhook.url}/admin/unanswered", headers=ADMIN)
    assert [i["reason"] for i in items if i["session_id"] == "tg565"] == ["thumbs_down"]


async def test_a_near_miss_offers_faq_questions_as_buttons(
    webhook: Server, fake: FakeTelegram
) -> None:
    """A question near FAQ entries but not close enough to answer from: the closest questions
    come as buttons (their lines leave the text); pressing one asks it."""
    chat, key = 569, secret(fake)
    question = "i need to send back a jacket that is too small"
    await post_update(webhook, fake.update(message=fake.message(question, chat=chat)), key)
    await fake.wait_for(lambda: fake.sent("sendMessage", chat))
    [sent] = fake.sent("sendMessage", chat)
    assert "Did you mean:" in sent["text"] and "- How do I return an item?" not in sent["text"]
    buttons = [b for row in sent["reply_markup"]["inline_keyboard"] for b in row]
    offered = {b["text"]: b["callback_data"] for b in buttons if b["callback_data"] != "human"}
    assert "How do I return an item?" in offered and "Talk to a human" not in offered
    callback = {
        "id": f"cb-{chat}",
        "from": user(chat),
        "message": {
            **fake.message(chat=chat),
            "from": BOT_USER,
            "text": html.unescape(sent["text"]),
            "reply_markup": sent["reply_markup"],
        },
        "chat_instance": f"ci-{chat}",
        "data": offered["How do I return an item?"],
    }
    await post_update(webhook, fake.update(callback_query=callback), key)
    await fake.wait_for(lambda: len(fake.sent("sendMessage", chat)) == 2)
    answer = html.unescape(fake.sent("sendMessage", chat)[1]["text"])
    assert answer.startswith('Go to "My account" > "Orders", choose the order')
    assert [t["text"] for t in await turns(webhook, chat) if t["role"] == "user"] == [
        question,
        "How do I return an item?",
    ]


async def test_human_hands_over_and_the_operator_message_reaches_the_chat(
    webhook: Server, fake: FakeTelegram
) -> None:
    await post_update(webhook, fake.update(message=fake.message("/human", chat=566)), secret(fake))
    await fake.wait_for(lambda: fake.sent("sendMessage", 566))
    assert "you are next" in texts(fake, 566)[0]
    told = "A customer in Telegram (conversation tg566, as the operator desk shows it) is waiting"
    await fake.wait_for(lambda: [t for t in texts(fake, OPERATORS) if t.startswith(told)])
    [notice] = [m for m in fake.sent("sendMessage", OPERATORS) if m["text"].startswith(told)]
    assert notice == {
        "chat_id": str(OPERATORS),
        "text": f"{told} for a person (customer asked for a human); they are next in line.",
    }
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as api:
        session = (await api.get("/admin/sessions/tg566")).json()
        assert session["state"] == "pending_human" and session["channel"] == "telegram"
        assert (await api.post("/admin/handoff/tg566/take", json={"operator": "max"})).is_success
        body = {"operator": "max", "text": "Hi, Max here <from support> & happy to help."}
        assert (await api.post("/admin/handoff/tg566/messages", json=body)).is_success
    await fake.wait_for(lambda: "Hi, Max here <from support> & happy to help." in texts(fake, 566))
    assert "You are now talking to max." in texts(fake, 566)
    # The operators' Telegram group hears that max took the customer at the desk, and his note.
    await fake.wait_for(lambda: in_team(fake, "max has conversation tg566."))
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as api:
        body = {"operator": "max", "text": "Parcel 4471 lost; refund offered"}
        assert (await api.post("/admin/handoff/tg566/notes", json=body)).status_code == 201
    await fake.wait_for(lambda: in_team(fake, "Note by max on tg566: Parcel 4471 lost; refund"))


def in_team(fake: FakeTelegram, starts: str) -> list[dict[str, Any]]:
    """The bot's messages in the team chat that begin with `starts`."""
    return [m for m in fake.posted(TEAM) if m["text"].startswith(starts)]


def team_message(
    fake: FakeTelegram, text: str | None, operator: dict[str, Any], reply_to: dict[str, Any]
) -> dict[str, Any]:
    """An operator's message in the team chat, replying to the bot's message `reply_to`."""
    group = {"id": TEAM, "title": "Pinecone support", "type": "supergroup"}
    message = fake.message(text, chat=TEAM, reply_to_message={**reply_to, "chat": group})
    return {**message, "chat": group, "from": operator}


async def test_operators_answer_customers_from_their_telegram_group(
    webhook: Server, fake: FakeTelegram
) -> None:
    """The team chat as an operator console: a web customer who asks for a person is posted
    there with what they asked; an operator's reply to that post takes the conversation and
    reaches the customer in the web chat; what the customer writes next is posted there; a
    colleague cannot write into it; /done hands it back. A Telegram customer is taken with the
    Take button and handed back with the other button. Photos go both ways, and operators at
    the desk see them too."""
    key, olga, ivan = secret(fake), {**user(901, "Olga"), "last_name": "Petrova"}, user(902, "Ivan")
    sid = "team-web-customer"
    await asyncio.to_thread(webhook.chat, sid, "How much does shipping cost?")
    async with httpx.AsyncClient(timeout=120) as client:
        body = {"session_id": sid, "message": "can I talk to a person please?"}
        page = {"page": "https://shop.example/checkout?step=2"}  # sent by the widget
        assert (await client.post(f"{webhook.url}/api/chat", json={**body, **page})).is_success
    await fake.wait_for(lambda: in_team(fake, "A customer in the web chat (conversation team-web"))
    [notice] = in_team(fake, "A customer in the web chat (conversation team-web")
    assert "Customer: How much does shipping cost?\nAssistant: Standard shipping" in notice["text"]
    assert "next in line. They are on the page https://shop.example/checkout\n\n" in notice["text"]
    assert notice["text"].endswith("Tap Take, or reply to this message to answer the customer.")
    assert notice["params"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "Take"

    hello = team_message(fake, "Hi, Olga here. Let me check your order.", olga, notice)
    await post_update(webhook, fake.update(message=hello), key)

    async def history() -> list[dict[str, Any]]:
        r = await get(f"{webhook.url}/api/chat/{sid}/history")
        return [t for t in r["turns"] if t["role"] == "operator"]

    await fake.wait_for(lambda: history())
    assert [(t["text"], t["operator"]) for t in await history()] == [
        ("Hi, Olga here. Let me check your order.", "Olga P.")
    ]
    await fake.wait_for(lambda: in_team(fake, "Olga P. has conversation team-web."))

    def untaken(notice: dict[str, Any]) -> list[dict[str, Any]]:
        """The edits that took the Take button from `notice`."""
        edits = fake.sent("editMessageReplyMarkup", TEAM)
        return [e for e in edits if str(e["message_id"]) == str(notice["message_id"])]

    await fake.wait_for(lambda: untaken(notice))  # taken: its Take button goes
    # The web customer's photo reaches the group as a file, under the line that tells of it.
    async with httpx.AsyncClient(timeout=30) as client:
        url = f"{webhook.url}/api/chat/{sid}/files"
        sent = await client.post(url, params={"name": "zip.png"}, content=png(2, 2))
        assert sent.status_code == 200, sent.text
    await fake.wait_for(lambda: fake.sent("sendDocument", TEAM))
    [told] = in_team(fake, "Customer (team-web, with Olga P.): [image zip.png]")
    [document] = [c for c in fake.calls if c.method == "sendDocument"]
    assert document.params["reply_parameters"]["message_id"] == told["message_id"]
    await asyncio.to_thread(webhook.chat, sid, "thanks, it is order 4471")
    wrote = "Customer (team-web, with Olga P.): thanks, it is order 4471"
    await fake.wait_for(lambda: in_team(fake, wrote))
    [follow_up] = in_team(fake, wrote)  # in the thread, after the latest post about it
    assert follow_up["params"]["reply_parameters"]["message_id"] == document.result["message_id"]

    # What Olga writes from the desk is posted in the thread too, for colleagues here; what
    # she wrote here is not posted again.
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as client:
        desk = {"operator": "Olga P.", "text": "Found it: order 4471 ships today."}
        assert (await client.post(f"/admin/handoff/{sid}/messages", json=desk)).is_success
    mirrored = "Olga P. to the customer (team-web, from the desk): Found it: order 4471 ships"
    await fake.wait_for(lambda: in_team(fake, mirrored))
    assert not in_team(fake, "Olga P. to the customer (team-web, from the desk): Hi, Olga")
    intrude = team_message(fake, "Ivan here, hello!", ivan, follow_up)
    await post_update(webhook, fake.update(message=intrude), key)
    refused = "Olga P. has this conversation; your message was not sent."
    await fake.wait_for(lambda: in_team(fake, refused))
    # Olga's photo in reply reaches the web customer, kept with the conversation; a voice
    # message cannot.
    fake.files["ph1"] = sent_back = png(6, 5)
    photo = team_message(fake, None, olga, follow_up)
    shot = {"file_id": "ph1", "file_unique_id": "u1", "width": 6, "height": 5, "file_size": 90}
    photo.update(photo=[shot], caption="Is it this zip?")
    await post_update(webhook, fake.update(message=photo), key)

    async def with_file() -> bool:
        return any(t["file"] for t in await history())

    await fake.wait_for(with_file)
    [shown] = [t for t in await history() if t["file"]]
    assert (shown["text"], shown["operator"]) == ("[image photo.jpg] Is it this zip?", "Olga P.")
    async with httpx.AsyncClient(timeout=30) as client:
        got = await client.get(f"{webhook.url}/api/chat/{sid}/files/{shown['file']}")
    assert got.content == sent_back
    voice = team_message(fake, None, olga, follow_up)
    voice["voice"] = {"file_id": "v1", "file_unique_id": "uv1", "duration": 2}
    await post_update(webhook, fake.update(message=voice), key)
    await fake.wait_for(lambda: in_team(fake, "Only text, photos and PDF files reach a customer"))
    # A note for the team, kept on the conversation (the desk shows it), not for the customer.
    note = team_message(fake, "/note Wants express shipping next time", olga, follow_up)
    await post_update(webhook, fake.update(message=note), key)
    noted = "Note by Olga P. on team-web: Wants express shipping next time"
    await fake.wait_for(lambda: in_team(fake, noted))
    session = await get(f"{webhook.url}/admin/sessions/{sid}", headers=ADMIN)
    assert [(t["text"], t["operator"]) for t in session["turns"] if t["role"] == "note"] == [
        ("Wants express shipping next time", "Olga P.")
    ]
    assert "express" not in str(await get(f"{webhook.url}/api/chat/{sid}/history"))
    # The team's saved replies, kept at the desk, are listed and sent from here too.
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as client:
        body = {"operator": "Ivan", "text": "Anything else I can help with?"}
        assert (await client.put("/admin/replies/Anything else", json=body)).is_success
    listing = team_message(fake, "/saved", olga, follow_up)
    del listing["reply_to_message"]
    await post_update(webhook, fake.update(message=listing), key)
    await fake.wait_for(lambda: in_team(fake, "Saved replies:\n- Anything else\nReply to a"))
    unknown = team_message(fake, "/saved Goodbye", olga, follow_up)
    await post_update(webhook, fake.update(message=unknown), key)
    await fake.wait_for(lambda: in_team(fake, "No saved reply is called 'Goodbye'. Saved replies:"))
    picked = team_message(fake, "/saved anything ELSE", olga, follow_up)
    await post_update(webhook, fake.update(message=picked), key)

    async def sent_saved() -> bool:
        return ("Anything else I can help with?", "Olga P.") in [
            (t["text"], t["operator"]) for t in await history()
        ]

    await fake.wait_for(sent_saved)
    done = team_message(fake, "/done", olga, follow_up)
    await post_update(webhook, fake.update(message=done), key)
    back = "Conversation team-web is back with the assistant (handed back by Olga P.)."
    await fake.wait_for(lambda: in_team(fake, back))
    session = await get(f"{webhook.url}/admin/sessions/{sid}", headers=ADMIN)
    assert session["state"] == "bot"
    assert [(t["text"], t["operator"]) for t in await history()] == [
        ("Hi, Olga here. Let me check your order.", "Olga P."),
        ("Found it: order 4471 ships today.", "Olga P."),
        ("[image photo.jpg] Is it this zip?", "Olga P."),
        ("Anything else I can help with?", "Olga P."),
    ]

    chat = 581
    await post_update(webhook, fake.update(message=fake.message("/human", chat=chat)), key)
    await fake.wait_for(lambda: in_team(fake, "A customer in Telegram (conversation tg581"))
    [notice] = in_team(fake, "A customer in Telegram (conversation tg581")

    async def press(button: str, on: dict[str, Any], n: int) -> None:
        callback = {
            "id": f"cb-team-{n}",
            "from": ivan,
            "message": {k: v for k, v in on.items() if k != "params"},
            "chat_instance": "ci-team",
            "data": button,
        }
        await post_update(webhook, fake.update(callback_query=callback), key)

    await press("team:take", notice, 1)
    await fake.wait_for(lambda: in_team(fake, "Ivan has conversation tg581."))
    [taken] = in_team(fake, "Ivan has conversation tg581.")
    await fake.wait_for(lambda: "You are now talking to Ivan." in texts(fake, chat))
    await fake.wait_for(lambda: untaken(notice))
    # A photo from the customer reaches Ivan in the group, under what it is; the stored
    # conversation says that it was sent.
    shot = [{"file_id": "AgADBQAD", "file_unique_id": "AQADBQ", "width": 7, "height": 3}]
    fake.files["AgADBQAD"] = broken = png(7, 3)
    photo = fake.message(chat=chat, photo=shot, caption="it arrived broken")
    await post_update(webhook, fake.update(message=photo), key)
    await fake.wait_for(lambda: fake.sent("copyMessage", TEAM))
    [line] = in_team(fake, "Customer (tg581, with Ivan): [photo] it arrived broken")
    [copied] = fake.sent("copyMessage", TEAM)
    assert (copied["from_chat_id"], copied["message_id"]) == (str(chat), str(photo["message_id"]))
    assert copied["reply_parameters"]["message_id"] == line["message_id"]
    # The desk has it too.
    [kept] = [t for t in await turns(webhook, chat) if t["file"]]
    assert (kept["role"], kept["text"]) == ("user", "[photo] it arrived broken")
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as client:
        opened = await client.get(f"/admin/sessions/tg{chat}/files/{kept['file']}")
    assert opened.content == broken
    assert "only read text" not in " ".join(texts(fake, chat))
    # Ivan's photo in reply reaches the customer in Telegram.
    label = team_message(fake, None, ivan, line)
    label.update(photo=[{**shot[0], "file_id": "label1"}], caption="the label is here")
    await post_update(webhook, fake.update(message=label), key)
    await fake.wait_for(lambda: fake.sent("copyMessage", chat))
    [to_customer] = fake.sent("copyMessage", chat)
    assert (to_customer["from_chat_id"], to_customer["message_id"]) == (
        str(TEAM),
        str(label["message_id"]),
    )
    said = [(t["role"], t["text"]) for t in await turns(webhook, chat)]
    assert ("operator", "[photo] the label is here") in said
    # While Ivan types at the desk, the customer sees "typing…"; a photo he sends from there
    # reaches them as a photo, with his words.
    actions = len(fake.sent("sendChatAction", chat))
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as client:
        typing = await client.post(f"/admin/handoff/tg{chat}/typing", json={"operator": "Ivan"})
        assert typing.status_code == 204
        await fake.wait_for(lambda: len(fake.sent("sendChatAction", chat)) > actions)
        assert fake.sent("sendChatAction", chat)[-1]["action"] == "typing"
        query = {"operator": "Ivan", "name": "steps.png", "caption": "Tap here, then Retry."}
        url = f"/admin/handoff/tg{chat}/files"
        assert (await client.post(url, params=query, content=png(8, 8))).is_success
    await fake.wait_for(lambda: fake.sent("sendPhoto", chat))
    [pictured] = fake.sent("sendPhoto", chat)
    assert (pictured["photo"], pictured["caption"]) == (png(8, 8), "Tap here, then Retry.")
    # ... and reaches the group's thread too, under what it is.
    told = "Ivan to the customer (tg581, from the desk): [image steps.png] Tap here, then Retry."
    await fake.wait_for(lambda: in_team(fake, told))
    await fake.wait_for(lambda: png(8, 8) in [d["document"] for d in fake.sent("sendDocument")])
    await press("team:back", taken, 2)
    back = "Conversation tg581 is back with the assistant (handed back by Ivan)."
    await fake.wait_for(lambda: in_team(fake, back))
    await fake.wait_for(lambda: "You are back with the assistant." in " ".join(texts(fake, chat)))
    # The customer may rate Ivan's help with the buttons under that message.
    [ended] = [m for m in fake.posted(chat) if m["text"].startswith("You are back")]
    [rate_up, _] = ended["params"]["reply_markup"]["inline_keyboard"][0]
    assert rate_up["text"] == "👍 Ivan helped"
    rating = {
        "id": "cb-rate-581",
        "from": user(chat),
        "message": {k: v for k, v in ended.items() if k != "params"},
        "chat_instance": "ci-581",
        "data": rate_up["callback_data"],
    }
    await post_update(webhook, fake.update(callback_query=rating), key)
    await press("team:take", notice, 3)  # too late: it is with the assistant again

    def answered(query: str) -> list[dict[str, Any]]:
        return [a for a in fake.sent("answerCallbackQuery") if a["callback_query_id"] == query]

    await fake.wait_for(lambda: answered("cb-team-3"))
    assert answered("cb-team-1")[0]["text"] == "Conversation tg581 is yours."
    [late] = answered("cb-team-3")
    assert "is not waiting for a human" in late["text"] and late["show_alert"] in (True, "true")
    assert answered("cb-rate-581")[0]["text"] == "Thank you for the feedback!"
    metrics = await asyncio.to_thread(httpx.get, f"{webhook.url}/metrics", timeout=30)
    sent = re.search(
        r'^answerdesk_team_chat_posts_total\{result="sent"\} (\d+)', metrics.text, re.M
    )
    assert sent and int(float(sent[1])) >= 3  # the notices and the customer's message
    figures = await get(f"{webhook.url}/admin/stats", headers=ADMIN)
    assert {"operator": "Ivan", "taken": 1, "thumbs_up": 1, "thumbs_down": 0} in figures[
        "operators"
    ]


async def test_operators_in_the_team_chat_say_when_they_are_here(
    webhook: Server, fake: FakeTelegram
) -> None:
    """A team that works from its Telegram group has no desk open: `/here` there counts an
    operator as present (the widget says the team is here, a customer who asks for a person is
    told it should not take long, the desk lists them) and says who waits, `/waiting` posts
    them again with a Take button, `/away` undoes `/here`."""
    key, sveta = secret(fake), {**user(903, "Sveta"), "last_name": "Sokolova"}
    group = {"id": TEAM, "title": "Pinecone support", "type": "supergroup"}

    async def say(text: str) -> None:
        said = {**fake.message(text, chat=TEAM), "chat": group, "from": sveta}
        await post_update(webhook, fake.update(message=said), key)

    async def team_here() -> bool:
        return bool((await get(f"{webhook.url}/api/team"))["here"])

    async def desk() -> Any:
        return await get(f"{webhook.url}/admin/handoff?present=false", headers=ADMIN)

    async def asks_for_a_person(sid: str) -> str:
        async with httpx.AsyncClient(timeout=120) as client:
            body = {"session_id": sid, "message": "can I talk to a person please?"}
            r = await client.post(f"{webhook.url}/api/chat", json=body)
        return str(r.json()["reply"])

    assert not await team_here()
    alone = await asks_for_a_person("team-nobody-here")
    assert "No one from our team is online right now, so this may take a while." in alone
    told = "A customer in the web chat (conversation team-nob"
    await fake.wait_for(lambda: in_team(fake, told))
    [notice] = in_team(fake, told)
    waiting = len((await desk())["waiting"])

    await say("/help")
    await fake.wait_for(lambda: in_team(fake, "How to answer customers here:"))
    await say("/here")
    await fake.wait_for(lambda: in_team(fake, "Sveta S. is here"))
    [here] = in_team(fake, "Sveta S. is here")
    assert "Send /away when you leave (this lasts 12 hours at most)." in here["text"]
    assert "Here now: Sveta S." in here["text"]
    customers = "1 customer is" if waiting == 1 else f"{waiting} customers are"
    assert here["text"].endswith(f"{customers} waiting: /waiting shows them.")
    assert await team_here()
    there = await asks_for_a_person("team-sveta-here")
    assert there.startswith("I've asked a colleague to take over; you are")
    assert "online" not in there and "e-mail" not in there
    assert (await desk())["present"] == ["Sveta S."]

    await say("/waiting")
    await fake.wait_for(lambda: len(in_team(fake, told)) == 2)
    assert in_team(fake, f"Waiting for a person, first come first: {waiting + 1}.")
    again = in_team(fake, told)[1]
    assert "is waiting for a person (waiting for " in again["text"]
    assert again["params"]["reply_markup"]["inline_keyboard"][0][0]["text"] == "Take"
    untaken = fake.sent("editMessageReplyMarkup", TEAM)  # the earlier post's Take button goes
    assert str(notice["message_id"]) in [e["message_id"] for e in untaken]
    async with httpx.AsyncClient(base_url=webhook.url, headers=ADMIN, timeout=30) as api:
        for sid in ["team-nobody-here", "team-sveta-here"]:  # out of the queue, for other tests
            assert (await api.delete(f"/admin/sessions/{sid}")).is_success

    await say("/away")
    await fake.wait_for(lambda: in_team(fake, "Sveta S. is away."))
    [away] = in_team(fake, "Sveta S. is away.")
    assert away["text"].startswith("Sveta S. is away. No one is here now: customers who ask")
    assert not await team_here()
    assert (await desk())["present"] == []


def test_the_team_chat_must_be_a_group() -> None:
    fake_token = FakeTelegram.token
    with pytest.raises(ValidationError, match="a group's chat id is negative"):
        Settings(telegram_token=fake_token, telegram_team_chat=555)
    assert Settings(telegram_token=fake_token, telegram_team_chat="").telegram_team_chat is None


async def test_teamchat_tells_a_group_its_id(webhook: Server, fake: FakeTelegram) -> None:
    group = {"id": -100555, "title": "Our team", "type": "supergroup"}
    asked = {**fake.message("/teamchat", chat=-100555), "chat": group}
    await post_update(webhook, fake.update(message=asked), secret(fake))
    await fake.wait_for(lambda: fake.sent("sendMessage", -100555))
    assert fake.sent("sendMessage", -100555)[0]["text"].startswith(
        "This chat's id is -100555: ANSWERDESK_TELEGRAM_TEAM_CHAT=-100555 makes it"
    )


async def test_reset_start_help_and_edits(webhook: Server, fake: FakeTelegram) -> None:
    chat, key = 567, secret(fake)
    await post_update(webhook, fake.update(message=fake.message("/start", chat=chat)), key)
    await fake.wait_for(lambda: texts(fake, chat))
    assert "Pinecone Outfitters assistant" in texts(fake, chat)[0]
    await post_update(webhook, fake.update(message=fake.message("hi there", chat=chat)), key)
    await fake.wait_for(lambda: len(texts(fake, chat)) == 2)
    assert len(await turns(webhook, chat)) == 2
    edited = fake.update(edited_message=fake.message("how do I reset my password?", chat=chat))
    await post_update(webhook, edited, key)
    await post_update(webhook, fake.update(message=fake.message("/reset", chat=chat)), key)
    await fake.wait_for(lambda: len(texts(fake, chat)) == 3)
    assert "forgotten our conversation" in texts(fake, chat)[-1]
    assert await turns(webhook, chat) == []


async def test_delete_erases_the_conversation(webhook: Server, fake: FakeTelegram) -> None:
    """/delete erases all answerdesk kept of the conversation, the bot's posts about it in the
    operators' team chat included."""
    chat, key = 571, secret(fake)
    for n, question in enumerate(["what is the capital of france?", "how much is shipping?"]):
        await post_update(webhook, fake.update(message=fake.message(question, chat=chat)), key)
        await fake.wait_for(lambda n=n: len(fake.sent("sendMessage", chat)) == n + 1)
    assert len(await turns(webhook, chat)) == 4
    unanswered = await get(f"{webhook.url}/admin/unanswered", headers=ADMIN)
    assert [i["question"] for i in unanswered if i["session_id"] == f"tg{chat}"] == [
        "what is the capital of france?"
    ]
    await post_update(webhook, fake.update(message=fake.message("/human", chat=chat)), key)
    await post_update(
        webhook, fake.update(message=fake.message("my order is 8812", chat=chat)), key
    )
    await fake.wait_for(lambda: in_team(fake, "Customer (tg571, waiting): my order is 8812"))
    posts = [m["message_id"] for m in fake.posted(TEAM) if "tg571" in m["text"]]
    assert len(posts) == 2  # the notice that they wait, and what they wrote
    await post_update(webhook, fake.update(message=fake.message("/delete", chat=chat)), key)
    await fake.wait_for(lambda: "deleted our conversation" in texts(fake, chat)[-1])
    assert await turns(webhook, chat) == []
    unanswered = await get(f"{webhook.url}/admin/unanswered", headers=ADMIN)
    assert f"tg{chat}" not in [i["session_id"] for i in unanswered]
    gone = "Conversation tg571 was deleted at the customer's request, and with it the 2 messages"
    await fake.wait_for(lambda: in_team(fake, gone))
    assert posts in [d["message_ids"] for d in fake.sent("deleteMessages", TEAM)]

    # A web customer's; Telegram no longer lets the bot delete these posts (older than 48
    # hours, say): they are emptied instead.
    sid = "erased-web-customer"
    async with httpx.AsyncClient(base_url=webhook.url, timeout=120) as client:
        for said in ["my card ends in 4471", "can I talk to a person please?"]:
            body = {"session_id": sid, "message": said}
            assert (await client.post("/api/chat", json=body)).is_success
        await fake.wait_for(
            lambda: in_team(fake, "A customer in the web chat (conversation erased-w")
        )
        [notice] = in_team(fake, "A customer in the web chat (conversation erased-w")
        assert "my card ends in 4471" in notice["text"]
        fake.refuse_next["deleteMessages"] = 1
        assert (await client.delete(f"/api/chat/{sid}")).status_code == 204
    await fake.wait_for(lambda: in_team(fake, "Conversation erased-w was deleted"))
    edits = fake.sent("editMessageText", TEAM)
    assert [e["text"] for e in edits if e["message_id"] == str(notice["message_id"])] == [
        "(Deleted at the customer's request.)"
    ]


async def test_in_groups_the_bot_answers_only_when_mentioned(
    webhook: Server, fake: FakeTelegram
) -> None:
    group = {"id": -100777, "title": "Hikers", "type": "supergroup"}
    key = secret(fake)
    plain = fake.message("how do I reset my password?", chat=-100777)
    plain["chat"] = group
    await post_update(webhook, fake.update(message=plain), key)
    mention = fake.message("@pinecone_bot what are your opening hours?", chat=-100777)
    mention["chat"] = group
    await post_update(webhook, fake.update(message=mention), key)
    await fake.wait_for(lambda: fake.sent("sendMessage", -100777))
    [sent] = fake.sent("sendMessage", -100777)
    assert "Monday to Friday" in html.unescape(sent["text"])
    assert sent["reply_parameters"]["message_id"] == mention["message_id"]


async def test_polling_answers_once_per_update(
    tmp_path: Path, fake: FakeTelegram, faq_file: Path
) -> None:
    server = Server(
        tmp_path,
        extra_env={
            "ANSWERDESK_TELEGRAM_TOKEN": fake.token,
            "ANSWERDESK_TELEGRAM_API_URL": fake.url,
            "ANSWERDESK_FAQ_FILE": str(faq_file),
        },
    )
    log = (tmp_path / "polling.log").open("ab")
    process = await asyncio.create_subprocess_exec(
        str(BIN), "telegram", env=server.env(), stdout=log, stderr=log
    )
    try:
        update = fake.update(message=fake.message("How much does shipping cost?", chat=570))
        fake.push(update, update, update)  # delivered three times
        await fake.wait_for(lambda: fake.sent("sendMessage", 570), within=120)
        await fake.wait_for(lambda: any(c.method == "deleteWebhook" for c in fake.calls))
        start = fake.update(message=fake.message("/start", chat=570))
        fake.push(start)
        await fake.wait_for(lambda: len(fake.sent("sendMessage", 570)) == 2)
        first = html.unescape(fake.sent("sendMessage", 570)[0]["text"])
        assert "Standard shipping costs 4.95 EUR" in first
        assert "assistant" in fake.sent("sendMessage", 570)[1]["text"]
    finally:
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), 30) in (0, -signal.SIGINT)
    assert len([t for t in texts(fake, 570) if "4.95 EUR" in t]) == 1


async def test_a_missing_or_rejected_token_is_a_clear_error(
    tmp_path: Path, fake: FakeTelegram
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSWERDESK_")}
    env["ANSWERDESK_DATA_DIR"] = str(tmp_path)
    run = functools.partial(subprocess.run, env=env, capture_output=True, text=True, timeout=60)
    missing = await asyncio.to_thread(run, [str(BIN), "telegram"])
    assert missing.returncode != 0 and "ANSWERDESK_TELEGRAM_TOKEN is not set" in missing.stderr
    env.update(
        ANSWERDESK_TELEGRAM_TOKEN="123456789:AAHsomeOtherTokenThatTelegramRejects_x",
        ANSWERDESK_TELEGRAM_API_URL=fake.url,
    )
    rejected = await asyncio.to_thread(
        run, [str(BIN), "telegram", "set-webhook", "https://example.invalid/telegram/webhook"]
    )
    assert rejected.returncode != 0 and "rejected ANSWERDESK_TELEGRAM_TOKEN" in rejected.stderr
