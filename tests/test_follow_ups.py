"""Operator messages a web chat's customer did not see, e-mailed to the address they left: the
queue on a real Redis, the e-mail through a real SMTP server, and the whole way through
`answerdesk serve` with the real model."""

import time
from collections.abc import Iterator
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
from redis.asyncio import Redis

from adapters.email_follow_ups import BadSmtpUrl, Mailer, Smtp
from bot import FollowUp, FollowUps, HandoffDesk, SessionFiles, SessionKeys, SessionStore, Turn
from bot.erasure import erase_session
from tests.pictures import png
from tests.server import Server
from tests.smtp_inbox import SmtpInbox

TOKEN = "follow-up-token"
AUTH = {"authorization": f"Bearer {TOKEN}"}


async def taken_by_olga(
    store: SessionStore, session: str, email: str | None = "ann@example.com", channel: str = "web"
) -> HandoffDesk:
    """A customer (who left `email`) waiting for a person, taken by Olga."""
    desk = HandoffDesk(store)
    meta = {"state": "pending_human", **({"email": email} if email else {})}
    await store.append(session, [Turn("user", "a person please", 1.0)], channel=channel, meta=meta)
    await desk.enqueue(session, time.time())
    await desk.take(session, "Olga")
    return desk


async def olga_writes(
    store: SessionStore, desk: HandoffDesk, follow_ups: FollowUps, session: str, text: str
) -> Turn:
    """Olga's message, queued as the e-mail notifier queues it (`EmailFollowUps.answered`)."""
    await desk.send(session, "Olga", text)
    info = await store.info(session, with_turns=True)
    await follow_ups.schedule(info, info.turns[-1])
    return info.turns[-1]


def texts(mails: list[FollowUp]) -> list[list[str]]:
    return [[t.text for t in mail.said] for mail in mails]


async def test_unseen_messages_are_e_mailed_once_and_seen_ones_never(
    redis_client: Redis, prefix: str
) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix))
    follow_ups = FollowUps(store, after_s=60)
    desk = await taken_by_olga(store, "s1")
    first = await olga_writes(store, desk, follow_ups, "s1", "Your refund is on its way.")
    await olga_writes(store, desk, follow_ups, "s1", "It takes 3 days.")
    assert await follow_ups.due(time.time()) == []  # not yet: the customer may still read them
    later = first.ts + 61
    mails = await follow_ups.due(later)
    assert texts(mails) == [["Your refund is on its way.", "It takes 3 days."]]
    assert mails[0].info.email == "ann@example.com"
    assert await follow_ups.due(later) == []  # claimed by this worker
    await follow_ups.sent(mails[0])
    note = (await store.history("s1"))[-1]  # for the operators; the customer never sees it
    assert (note.role, note.operator) == ("note", None)
    assert (
        note.text == "E-mailed to ann@example.com: 2 operator messages the customer had not seen."
    )
    assert await follow_ups.due(later + 600) == []  # never twice
    assert await redis_client.zscore(SessionKeys(prefix).follow_ups, "s1") is None

    third = await olga_writes(store, desk, follow_ups, "s1", "Anything else?")
    (again,) = await follow_ups.due(third.ts + 61)
    assert texts([again]) == [["Anything else?"]]  # only what came after the e-mail
    await follow_ups.sent(again)

    # Seen on a page of the customer's: nothing to e-mail, and the queue forgets it.
    fourth = await olga_writes(store, desk, follow_ups, "s1", "Here is your label.")
    await follow_ups.shown("s1", time.time())
    assert await follow_ups.due(fourth.ts + 61) == []
    assert await redis_client.zscore(SessionKeys(prefix).follow_ups, "s1") is None


async def test_a_message_written_while_the_e_mail_goes_out_gets_one_of_its_own(
    redis_client: Redis, prefix: str
) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix))
    follow_ups = FollowUps(store, after_s=60)
    desk = await taken_by_olga(store, "s2")
    first = await olga_writes(store, desk, follow_ups, "s2", "one")
    (mail,) = await follow_ups.due(first.ts + 61)
    second = await olga_writes(store, desk, follow_ups, "s2", "two")  # queued already: no new entry
    await follow_ups.sent(mail)
    assert await follow_ups.due(second.ts + 59) == []
    assert texts(await follow_ups.due(second.ts + 61)) == [["two"]]


async def test_only_web_customers_who_left_an_address_are_e_mailed_and_failures_come_back(
    redis_client: Redis, prefix: str
) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix))
    follow_ups = FollowUps(store, after_s=60)
    nobody = await taken_by_olga(store, "no-address", email=None)
    telegram = await taken_by_olga(store, "tg1", channel="telegram")
    erased = await taken_by_olga(store, "erased")
    failing = await taken_by_olga(store, "failing")
    for desk, session in [(nobody, "no-address"), (telegram, "tg1"), (erased, "erased")]:
        await olga_writes(store, desk, follow_ups, session, "Hello")
    said = await olga_writes(store, failing, follow_ups, "failing", "Hello")
    await erase_session(store, "erased")
    (mail,) = await follow_ups.due(said.ts + 61)
    assert mail.info.session_id == "failing"
    await follow_ups.failed(mail, retry_s=120)
    assert await follow_ups.due(time.time() + 60) == []
    assert texts(await follow_ups.due(time.time() + 121)) == [["Hello"]]


def test_smtp_urls_say_what_is_wrong() -> None:
    assert Smtp.from_url("smtp://mail.example.com") == Smtp("mail.example.com", 587, False)
    assert Smtp.from_url("smtps://ann%40shop:p%2Fw@mail.example.com") == Smtp(
        "mail.example.com", 465, True, "ann@shop", "p/w"
    )
    for url, problem in [
        ("https://mail.example.com", "must begin with smtp:// or smtps://"),
        ("smtp://:25", "names no server"),
        ("smtp://mail.example.com:port", "port is not a number"),
    ]:
        with pytest.raises(BadSmtpUrl, match=problem):
            Smtp.from_url(url)


async def test_the_e_mail_says_who_wrote_what_and_carries_their_files(
    redis_client: Redis, prefix: str
) -> None:
    store = SessionStore(redis_client, SessionKeys(prefix))
    follow_ups = FollowUps(store, after_s=60)
    desk = await taken_by_olga(store, "s3")
    await store.append("s3", [], meta={"page": "https://shop.example/returns"})
    label = await SessionFiles(store).put("s3", "label.png", png(4, 4))
    await olga_writes(store, desk, follow_ups, "s3", "Your refund is on its way.")
    await desk.send("s3", "Olga", f"[image {label.name}] Print this label", file=label.id)
    info = await store.info("s3", with_turns=True)
    await follow_ups.schedule(info, info.turns[-1])
    (mail,) = await follow_ups.due(time.time() + 61)
    inbox = SmtpInbox()
    try:
        mailer = Mailer(
            Smtp.from_url(inbox.url),
            "Pinecone Outfitters <support@pinecone.example>",
            "Pinecone Outfitters",
            ZoneInfo("Europe/Berlin"),
        )
        await mailer.send(mailer.compose(mail, [label]))
        got = inbox.wait_for("ann@example.com", timeout_s=10)
    finally:
        inbox.close()
    assert got["From"] == "Pinecone Outfitters <support@pinecone.example>"
    assert got["Subject"] == "Pinecone Outfitters: Olga answered you"
    body = got.get_body(("plain",))
    assert body is not None
    words = body.get_content().replace("\r\n", "\n")
    assert "you asked for a person in the chat on https://shop.example/returns" in words
    assert "Your refund is on its way." in words
    assert "Print this label\n(attached: label.png)" in words
    assert "[image" not in words and ("CET" in words or "CEST" in words)
    (picture,) = list(got.iter_attachments())
    assert picture.get_filename() == "label.png" and picture.get_content() == png(4, 4)


# The whole way: `answerdesk serve` e-mails through a real SMTP server.


@pytest.fixture(scope="module")
def inbox() -> Iterator[SmtpInbox]:
    running = SmtpInbox()
    yield running
    running.close()


@pytest.fixture(scope="module")
def mailing(tmp_path_factory: pytest.TempPathFactory, inbox: SmtpInbox) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("mailing-data"),
        extra_env={
            "ANSWERDESK_ADMIN_TOKEN": TOKEN,
            "ANSWERDESK_SMTP_URL": inbox.url,
            "ANSWERDESK_MAIL_FROM": "Pinecone Outfitters <support@pinecone.example>",
            "ANSWERDESK_EMAIL_AFTER_MINUTES": "0.05",  # 3 s
            "ANSWERDESK_TEAM_EMAIL": "team@pinecone.example",
            "ANSWERDESK_PUBLIC_URL": "https://support.example.com/",
        },
    ).start()
    yield running
    running.stop()


def waiting_with_address(server: Server, session: str, address: str) -> None:
    """A web customer who asked for a person while no one was there and left `address`."""
    asked = httpx.post(
        f"{server.url}/api/chat",
        json={
            "session_id": session,
            "message": "can I talk to a person?",
            "page": "https://shop.example/",
        },
        timeout=120,
    ).json()
    assert "Leave your e-mail address here" in asked["reply"]
    thanked = server.chat(session, f"sure, it is {address}")
    assert f"they will write to {address}" in thanked["reply"]


def olga(server: Server, session: str, action: str, **body: object) -> httpx.Response:
    r = httpx.post(
        f"{server.url}/admin/handoff/{session}/{action}",
        headers=AUTH,
        json={"operator": "Olga", **body},
        timeout=60,
    )
    assert r.is_success, r.text
    return r


def test_a_customer_who_left_gets_the_operators_answer_by_e_mail(
    mailing: Server, inbox: SmtpInbox
) -> None:
    """Three customers leave an address: one reads the answer on the site (the chat's history,
    or its live events), one has the conversation deleted, one has left: only the last gets an
    e-mail, with the operator's message and photo, once."""
    for session, address in [
        ("reader", "rita@example.com"),
        ("live", "lena@example.com"),
        ("deleted", "dora@example.com"),
        ("gone", "gina@example.com"),
    ]:
        waiting_with_address(mailing, session, address)
        olga(mailing, session, "take")

    olga(mailing, "reader", "messages", text="Your parcel left today.")
    history = httpx.get(f"{mailing.url}/api/chat/reader/history", timeout=30).json()
    assert history["turns"][-1]["text"] == "Your parcel left today."  # the page shows it

    after = httpx.get(f"{mailing.url}/api/chat/live/history", timeout=30).json()["events_after"]
    with httpx.stream(
        "GET", f"{mailing.url}/api/chat/live/events?after={after}", timeout=60
    ) as events:
        olga(mailing, "live", "messages", text="Your parcel left today.")
        for line in events.iter_lines():
            if line.startswith("data:") and "Your parcel left today." in line:
                break

    olga(mailing, "deleted", "messages", text="Your parcel left today.")
    assert httpx.delete(f"{mailing.url}/api/chat/deleted", timeout=30).status_code == 204

    olga(mailing, "gone", "messages", text="Your parcel left today.")
    r = httpx.post(
        f"{mailing.url}/admin/handoff/gone/files",
        params={"name": "receipt.png", "caption": "Here is the receipt.", "operator": "Olga"},
        headers=AUTH,
        content=png(3, 3),
        timeout=60,
    )
    assert r.is_success, r.text

    got = inbox.wait_for("gina@example.com")
    body = got.get_body(("plain",))
    assert body is not None
    words = body.get_content().replace("\r\n", "\n")
    assert "chat on https://shop.example/" in words
    assert "Your parcel left today." in words
    assert "Here is the receipt.\n(attached: receipt.png)" in words
    (picture,) = list(got.iter_attachments())
    assert picture.get_content() == png(3, 3)
    # The operators read that it was e-mailed, and where to.
    deadline, noted = time.monotonic() + 30, []
    while not noted and time.monotonic() < deadline:
        listed = httpx.get(f"{mailing.url}/admin/handoff", headers=AUTH, timeout=30).json()
        (gone,) = [s for s in listed["active"] if s["session_id"] == "gone"]
        noted = [t["text"] for t in gone["turns"] if t["role"] == "note"]
    assert gone["email"] == "gina@example.com"
    assert noted == ["E-mailed to gina@example.com: 2 operator messages the customer had not seen."]
    time.sleep(4)  # a second look at the queue sends nothing more
    assert len(inbox.to("gina@example.com")) == 1
    for address in ["rita@example.com", "lena@example.com", "dora@example.com"]:
        assert inbox.to(address) == []
    metrics = httpx.get(f"{mailing.url}/metrics", timeout=30).text
    assert 'answerdesk_follow_up_emails_total{result="sent"} 1.0' in metrics


def test_the_team_is_told_by_e_mail_of_each_customer_who_waits(
    mailing: Server, inbox: SmtpInbox
) -> None:
    """Without a word of the customer's: the conversation stays at the desk."""
    mailing.chat("told", "I'm tina@example.com, can I talk to a person?")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not [
        m for m in inbox.to("team@pinecone.example") if "(conversation told)" in m["Subject"]
    ]:
        time.sleep(0.2)
    [told] = [m for m in inbox.to("team@pinecone.example") if "(conversation told)" in m["Subject"]]
    assert told["Subject"] == "Waiting for a person: a customer (conversation told)"
    assert told["From"] == "Pinecone Outfitters <support@pinecone.example>"
    body = told.get_body(("plain",))
    assert body is not None
    words = " ".join(body.get_content().split())
    assert words == (
        "A customer in the web chat (conversation told, as the operator desk shows it) is "
        "waiting for a person (customer asked for a human); they are next in line. Open the "
        "operator desk: https://support.example.com/operator"
    )
    assert "tina" not in words


def test_a_bad_smtp_url_stops_the_server_with_what_is_wrong(tmp_path: Path) -> None:
    server = Server(tmp_path, extra_env={"ANSWERDESK_SMTP_URL": "smtp://mail.example.com"})
    done = server.cli("serve", "--port", "0")
    assert done.returncode != 0
    assert "ANSWERDESK_SMTP_URL" in done.stderr and "ANSWERDESK_MAIL_FROM" in done.stderr
    alone = Server(tmp_path, extra_env={"ANSWERDESK_TEAM_EMAIL": "team@pinecone.example"})
    done = alone.cli("serve", "--port", "0")
    assert done.returncode != 0
    assert "ANSWERDESK_TEAM_EMAIL: Value error, e-mailing the team needs ANSWERDESK_SMTP_URL" in (
        done.stderr
    )
