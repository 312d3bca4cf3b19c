"""Operators over real HTTP against `answerdesk serve` with the real model: handoff, the
unanswered queue, and the chat API's limits."""

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
import redis

from tests.pictures import png
from tests.server import Server
from tests.webhook_receiver import WebhookReceiver

TOKEN = "s3cret-operator-token"
# The figures' days are the business's: a zone whose date is not UTC's now and for as long as
# possible, so that a day taken in UTC shows. (UTC+14 differs from 10:00 to 24:00 UTC, UTC-12
# from 00:00 to 12:00; no zone's date differs from UTC's on both sides of a UTC midnight.)
ZONE = "Pacific/Kiritimati" if datetime.now(UTC).hour >= 12 else "Etc/GMT+12"
AUTH = {"authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def team_chat() -> Iterator[WebhookReceiver]:
    receiver = WebhookReceiver()
    yield receiver
    receiver.close()


@pytest.fixture(scope="module")
def desk(tmp_path_factory: pytest.TempPathFactory, team_chat: WebhookReceiver) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("operator-data"),
        extra_env={
            "ANSWERDESK_ADMIN_TOKEN": TOKEN,
            "ANSWERDESK_HANDOFF_AFTER_FALLBACKS": "3",
            "ANSWERDESK_HANDOFF_WEBHOOK_URL": team_chat.url,
            "ANSWERDESK_PUBLIC_URL": "https://support.example.com/",
            "ANSWERDESK_TIME_ZONE": ZONE,
            "ANSWERDESK_HANDOFF_REMIND_MINUTES": "0.05",  # 3 s
        },
    ).start()
    yield running
    running.stop()


def admin(server: Server, method: str, path: str, **kwargs: object) -> httpx.Response:
    return httpx.request(method, f"{server.url}/admin{path}", headers=AUTH, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_admin_routes_need_the_token(desk: Server, server: Server) -> None:
    for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": TOKEN}):
        r = httpx.get(f"{desk.url}/admin/handoff", headers=headers, timeout=30)
        assert r.status_code == 401 and "bearer token" in r.json()["error"]
    assert admin(desk, "GET", "/handoff").status_code == 200
    # Without ANSWERDESK_ADMIN_TOKEN or an operator account the operator API is off, not open;
    # an operator account turns it on, for that operator's token alone.
    r = httpx.get(f"{server.url}/admin/handoff", headers=AUTH, timeout=30)
    assert r.status_code == 403 and "ANSWERDESK_ADMIN_TOKEN" in r.json()["error"]
    assert "answerdesk operators add NAME" in r.json()["error"]
    pat = added_operator(server, "Pat")
    queue = f"{server.url}/admin/handoff?present=false"  # (nobody is there: see the next test)
    assert httpx.get(queue, headers=pat, timeout=30).status_code == 200
    assert httpx.get(queue, headers=AUTH, timeout=30).status_code == 401
    assert server.cli("operators", "rm", "Pat").returncode == 0
    assert httpx.get(queue, headers=pat, timeout=30).status_code == 403


def test_the_desk_sees_a_customer_typing_to_the_operator_until_they_send_it(
    desk: Server,
) -> None:
    """Only while a person has the conversation: with the assistant there is no one to see it."""
    typing = f"{desk.url}/api/chat/typing-1/typing"
    desk.chat("typing-1", "hello")
    with_bot = httpx.post(typing, timeout=30)
    assert with_bot.status_code == 409
    assert with_bot.json()["error"] == "No person has the conversation to see it (state: bot)."
    assert httpx.post(f"{desk.url}/api/chat/never-was/typing", timeout=30).status_code == 404
    desk.chat("typing-1", "a human please")
    assert admin(desk, "POST", "/handoff/typing-1/take", json={"operator": "Tess"}).is_success

    def shown() -> bool:
        (theirs,) = [
            s
            for s in admin(desk, "GET", "/handoff").json()["active"]
            if s["session_id"] == "typing-1"
        ]
        return bool(theirs["customer_typing"])

    assert not shown()
    assert httpx.post(typing, timeout=30).status_code == 204
    assert shown()
    desk.chat("typing-1", "my order 4471 is late")  # sent: no longer typing
    assert not shown()
    assert admin(desk, "POST", "/handoff/typing-1/release", json={"operator": "Tess"}).is_success


def test_a_desk_left_idle_does_not_count_as_someone_there(server: Server) -> None:
    """A desk whose operator has been idle lists the queue with present=false: a customer who
    asks for a person then is told no one is online. A desk in use counts as someone there."""
    quinn = added_operator(server, "Quinn")
    idle = httpx.get(f"{server.url}/admin/handoff?present=false", headers=quinn, timeout=30)
    assert idle.status_code == 200
    alone = server.chat("idle-1", "can I talk to a person?")
    assert "No one from our team is online right now" in alone["reply"]
    assert httpx.get(f"{server.url}/admin/handoff", headers=quinn, timeout=30).is_success
    there = server.chat("idle-2", "can I talk to a person?")
    assert there["reply"] == (
        "I've asked a colleague to take over; you are number 2 in line. They will answer here."
    )
    assert server.cli("operators", "rm", "Quinn").returncode == 0


def added_operator(server: Server, name: str) -> dict[str, str]:
    """`answerdesk operators add NAME`: the authorization header of its token."""
    added = server.cli("operators", "add", name)
    assert added.returncode == 0, added.stderr
    token = added.stdout.split(f"token of {name}: ")[1].split()[0]
    return {"authorization": f"Bearer {token}"}


def test_each_operator_signs_in_with_a_token_of_their_own(desk: Server) -> None:
    """An operator added with `answerdesk operators add` acts under their own name with their
    own token (they cannot act as someone else); removed, their token stops working while the
    others' keep theirs."""
    olga = added_operator(desk, "Olga")
    again = desk.cli("operators", "add", "Olga")
    assert again.returncode == 1 and "There is an operator named 'Olga'" in again.stderr
    me = httpx.get(f"{desk.url}/admin/me", headers=olga, timeout=30)
    assert me.json() == {"operator": "Olga"}
    away = httpx.get(f"{desk.url}/admin/handoff?present=false", headers=olga, timeout=30)
    assert "Olga" not in away.json()["present"]  # an idle desk is not someone at the desk
    there = httpx.get(f"{desk.url}/admin/handoff", headers=olga, timeout=30)
    assert "Olga" in there.json()["present"]
    assert admin(desk, "GET", "/me").json() == {"operator": None}  # the owner's admin token

    desk.chat("own-token", "I want to talk to a human")
    act = f"{desk.url}/admin/handoff/own-token"
    taken = httpx.post(f"{act}/take", headers=olga, json={}, timeout=30)
    assert taken.status_code == 200 and taken.json()["operator"] == "Olga"
    posing = httpx.post(f"{act}/messages", headers=olga, json={"operator": "Ivan", "text": "Hi"})
    assert posing.status_code == 403
    assert posing.json()["error"] == "This token is Olga's: it acts as Olga, not as Ivan."
    sent = httpx.post(f"{act}/messages", headers=olga, json={"text": "Olga here."}, timeout=30)
    assert sent.status_code == 200 and sent.json()["operator"] == "Olga"
    nameless = admin(desk, "POST", "/handoff/own-token/messages", json={"text": "Hi"})
    assert nameless.status_code == 422 and "say who is acting" in nameless.json()["error"]
    listed = desk.cli("operators", "list")
    assert re.search(r"^Olga\tadded \d{4}-\d\d-\d\d$", listed.stdout, re.M), listed.stdout

    passed = httpx.post(f"{act}/pass", headers=olga, json={}, timeout=30)  # to a colleague
    assert passed.status_code == 200 and passed.json()["state"] == "pending_human"
    again = httpx.post(f"{act}/pass", headers=olga, json={}, timeout=30)
    assert again.status_code == 409 and "is not with an operator" in again.json()["error"]
    assert httpx.post(f"{act}/take", headers=olga, json={}, timeout=30).is_success

    assert desk.cli("operators", "rm", "Olga").returncode == 0
    gone = httpx.get(f"{desk.url}/admin/handoff", headers=olga, timeout=30)
    assert gone.status_code == 401
    assert admin(desk, "POST", "/handoff/own-token/release", json={"operator": "Olga"}).is_success


def test_the_owner_manages_the_operator_accounts(desk: Server) -> None:
    """With the admin token the owner adds, lists and removes operators over the API; an
    operator's own token cannot manage accounts or sites."""
    made = admin(desk, "POST", "/operators", json={"name": "Tom"})
    assert made.status_code == 201 and made.json()["name"] == "Tom"
    tom = {"authorization": f"Bearer {made.json()['token']}"}
    again = admin(desk, "POST", "/operators", json={"name": "Tom"})
    assert again.status_code == 409 and "There is an operator named 'Tom'" in again.json()["error"]
    blank = admin(desk, "POST", "/operators", json={"name": "   "})
    assert blank.status_code == 422 and "1 to 64 printable characters" in blank.json()["error"]
    posing = admin(desk, "POST", "/operators", json={"name": "Admin token"})
    assert posing.status_code == 422 and "without an operator's token" in posing.json()["error"]
    assert "Tom" in [o["name"] for o in admin(desk, "GET", "/operators").json()]

    owners_only = "Only the owner's admin token (ANSWERDESK_ADMIN_TOKEN) may do this."
    for method, path, body in [
        ("GET", "/operators", None),
        ("POST", "/operators", {"name": "Tim"}),
        ("DELETE", "/operators/Tom", None),
        ("POST", "/sites", {"name": "Shop", "origins": ["https://shop.example"]}),
        ("DELETE", "/sites/pk_nope", None),
    ]:
        r = httpx.request(method, f"{desk.url}/admin{path}", headers=tom, json=body, timeout=30)
        assert (r.status_code, r.json()["error"]) == (403, owners_only), (method, path)
    assert httpx.get(f"{desk.url}/admin/handoff", headers=tom, timeout=30).status_code == 200

    assert admin(desk, "DELETE", "/operators/Tom").status_code == 204
    assert admin(desk, "DELETE", "/operators/Tom").status_code == 404
    assert httpx.get(f"{desk.url}/admin/handoff", headers=tom, timeout=30).status_code == 401


def test_a_customer_is_handed_to_an_operator_and_back(desk: Server) -> None:
    assert admin(desk, "GET", "/handoff").is_success  # an operator watches the queue
    asked = desk.chat("h1", "Can I talk to a human please?")
    assert (asked["mode"], asked["state"]) == ("handoff", "pending_human")
    assert "you are next" in asked["reply"] and "online" not in asked["reply"]

    queues = admin(desk, "GET", "/handoff").json()
    [waiting] = [s for s in queues["waiting"] if s["session_id"] == "h1"]
    assert waiting["turns"][0]["text"] == "Can I talk to a human please?"
    assert waiting["state"] == "pending_human" and waiting["state_since"] > 0
    assert waiting["site"] == "demo"  # the web site it came from (the desk names it)

    taken = admin(desk, "POST", "/handoff/h1/take", json={"operator": "alice"})
    assert taken.status_code == 200 and taken.json()["state"] == "human"
    again = admin(desk, "POST", "/handoff/h1/take", json={"operator": "bob"})
    assert again.status_code == 409 and "not waiting" in again.json()["error"]

    quiet = desk.chat("h1", "my parcel never arrived")
    assert (quiet["mode"], quiet["reply"], quiet["state"]) == ("handoff", "", "human")

    sent = admin(
        desk, "POST", "/handoff/h1/messages", json={"operator": "alice", "text": "Checking now."}
    )
    assert sent.status_code == 200
    outbox = admin(desk, "GET", "/outbox/web").json()
    assert [m["text"] for m in outbox if m["session_id"] == "h1"] == [
        "You are now talking to alice.",
        "Checking now.",
    ]
    later = admin(desk, "GET", f"/outbox/web?after={outbox[-1]['id']}").json()
    assert later == []
    # A note for colleagues: kept on the conversation, never sent or shown to the customer.
    promised = "Refund promised for order 4471 by Friday"
    noted = admin(desk, "POST", "/handoff/h1/notes", json={"operator": "alice", "text": promised})
    assert noted.status_code == 201
    last = noted.json()["turns"][-1]
    assert (last["role"], last["text"], last["operator"]) == ("note", promised, "alice")
    assert admin(desk, "GET", "/outbox/web").json() == outbox

    back = admin(desk, "POST", "/handoff/h1/release", json={"operator": "alice"})
    assert back.status_code == 200 and back.json()["state"] == "bot"
    answered = desk.chat("h1", "how do I reset my password?")
    assert (answered["mode"], answered["state"]) == ("faq", "bot")

    history = httpx.get(f"{desk.url}/api/chat/h1/history", timeout=30).json()["turns"]
    assert promised not in str(history)  # the customer's view
    assert promised in str(admin(desk, "GET", "/sessions/h1").json()["turns"])  # the desk's
    operator_turns = [t for t in history if t["role"] == "operator"]
    assert operator_turns == [{**operator_turns[0], "text": "Checking now.", "operator": "alice"}]
    assert [t["text"] for t in history if t["role"] == "system"] == [
        "state: pending_human (customer asked for a human)",
        "state: human (taken by alice)",
        "state: bot (handed back by alice)",
    ]


def served_safely(response: httpx.Response, picture: bytes, quoted_name: str) -> None:
    """`picture` as it was sent, shown as an image and never run or sniffed as anything else."""
    assert response.status_code == 200 and response.content == picture
    assert response.headers["content-type"] == "image/png"
    assert response.headers["content-disposition"] == f"inline; filename*=UTF-8''{quoted_name}"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["content-security-policy"] == "default-src 'none'; sandbox"
    assert response.headers["cache-control"] == "private, no-store"


def test_a_customer_sends_the_operator_a_photo_from_the_web_chat(desk: Server) -> None:
    """While waiting for a person, a web customer sends a photo: kept with the conversation,
    told as a message of theirs, opened by operators; what is not a photo or PDF, is empty or
    too large, or is sent to the assistant, is refused with the reason; erased with the rest."""
    picture = png(3, 2)

    def upload(session: str, data: bytes, name: str = "broken zip.png") -> httpx.Response:
        url = f"{desk.url}/api/chat/{session}/files"
        headers = {"content-type": "image/png"}
        return httpx.post(url, params={"name": name}, content=data, headers=headers, timeout=30)

    assert desk.chat("f1", "Can I talk to a human please?")["state"] == "pending_human"
    sent = upload("f1", picture)
    assert sent.status_code == 200, sent.text
    assert sent.json()["reply"] == "Our colleague will see this when they take over; you are next."
    [turn] = [t for t in admin(desk, "GET", "/sessions/f1").json()["turns"] if t["file"]]
    assert (turn["role"], turn["text"]) == ("user", "[image broken zip.png]")
    opened = admin(desk, "GET", f"/sessions/f1/files/{turn['file']}")
    served_safely(opened, picture, "broken%20zip.png")
    unsigned = httpx.get(f"{desk.url}/admin/sessions/f1/files/{turn['file']}", timeout=30)
    assert unsigned.status_code == 401

    page = b"<html><script>alert(1)</script></html>"  # named .png, but not one
    refused = upload("f1", page)
    assert refused.status_code == 422
    assert refused.json()["error"] == (
        "This kind of file cannot be sent; send PNG, JPEG, GIF or WebP images and PDF files."
    )
    assert upload("f1", b"").status_code == 422
    assert upload("f1", picture + b"\0" * (5 * 1024 * 1024)).status_code == 413
    assert desk.chat("f2", "how do I reset my password?")["state"] == "bot"
    to_the_assistant = upload("f2", picture)
    assert to_the_assistant.status_code == 409
    assert "ask for a person first" in to_the_assistant.json()["error"]

    erased = admin(desk, "DELETE", "/sessions/f1")
    assert erased.is_success and erased.json()["files"] == 1
    gone = admin(desk, "GET", f"/sessions/f1/files/{turn['file']}")
    assert gone.status_code == 404


def test_an_operator_sends_a_web_customer_a_photo(desk: Server) -> None:
    """An operator who has the conversation sends a photo with words: the customer gets it in
    their conversation (its file at their own address, as sent), operators see it at the desk;
    one sent before taking the conversation, or not a picture or PDF, is refused and not kept."""
    label = png(5, 4)

    def send(data: bytes, caption: str = "", operator: str = "alice") -> httpx.Response:
        params = {"name": "return [label].png", "caption": caption, "operator": operator}
        return admin(desk, "POST", "/handoff/of1/files", params=params, content=data)

    assert desk.chat("of1", "Can I talk to a human please?")["state"] == "pending_human"
    early = send(label)
    assert early.status_code == 409 and "Take session of1" in early.json()["error"]
    typing = admin(desk, "POST", "/handoff/of1/typing", json={"operator": "alice"})
    assert typing.status_code == 409  # nobody writes to a waiting customer yet
    assert admin(desk, "POST", "/handoff/of1/take", json={"operator": "alice"}).is_success
    # While alice types, the customer's channel hears of it (the widget: "alice is typing…").
    typing = admin(desk, "POST", "/handoff/of1/typing", json={"operator": "alice"})
    assert typing.status_code == 204
    told = admin(desk, "GET", "/outbox/web").json()[-1]
    assert (told["session_id"], told["typing"], told["text"]) == ("of1", True, "")
    said = httpx.get(f"{desk.url}/api/chat/of1/history", timeout=30).json()["turns"]
    assert "operator" not in [t["role"] for t in said]  # not a message: nothing is kept
    refused = send(b"%!PS-Adobe-3.0 not a picture")
    assert refused.status_code == 422 and "cannot be sent" in refused.json()["error"]
    sent = send(label, caption=" Print this and stick it on the box. ")
    assert sent.status_code == 200, sent.text
    out = sent.json()
    assert out["text"] == "[image return (label).png] Print this and stick it on the box."
    assert (out["operator"], len(out["file"])) == ("alice", 32)
    assert admin(desk, "GET", "/outbox/web").json()[-1] == out  # for the widget to show

    said = httpx.get(f"{desk.url}/api/chat/of1/history", timeout=30).json()
    # The widget's event stream starts after what the history has: nothing comes twice.
    assert said["events_after"] == admin(desk, "GET", "/outbox/web").json()[-1]["id"]
    history = said["turns"]
    [turn] = [t for t in history if t["file"]]
    assert (turn["role"], turn["operator"], turn["file"]) == ("operator", "alice", out["file"])
    got = httpx.get(f"{desk.url}/api/chat/of1/files/{out['file']}", timeout=30)
    served_safely(got, label, "return%20%28label%29.png")
    elsewhere = httpx.get(f"{desk.url}/api/chat/nobody/files/{out['file']}", timeout=30)
    assert elsewhere.status_code == 404
    assert admin(desk, "GET", f"/sessions/of1/files/{out['file']}").content == label

    erased = admin(desk, "DELETE", "/sessions/of1")
    assert erased.is_success and erased.json()["files"] == 1  # the refused ones were not kept


def test_the_team_keeps_saved_replies(desk: Server) -> None:
    """Saved replies: listed by title, replaced by title, removed; a bad one is refused with
    what is wrong, and removing one that is not there says so."""
    assert admin(desk, "GET", "/replies").json() == []
    text = " Thanks for waiting: I am checking with our warehouse. "
    saved = admin(desk, "PUT", "/replies/Checking", json={"operator": "alice", "text": text})
    assert saved.status_code == 200, saved.text
    assert (saved.json()["title"], saved.json()["text"], saved.json()["by"]) == (
        "Checking",
        text.strip(),
        "alice",
    )
    again = {"operator": "bob", "text": "One moment, please."}
    assert admin(desk, "PUT", "/replies/Checking", json=again).is_success
    admin(desk, "PUT", "/replies/Bye for now", json={"operator": "bob", "text": "Bye!"})
    listed = [(r["title"], r["text"], r["by"]) for r in admin(desk, "GET", "/replies").json()]
    assert listed == [("Bye for now", "Bye!", "bob"), ("Checking", "One moment, please.", "bob")]

    blank = admin(desk, "PUT", "/replies/Empty", json={"operator": "bob", "text": "   "})
    assert blank.status_code == 422
    assert blank.json()["error"] == "text: give one of 1 to 4000 characters."
    long = admin(desk, "PUT", "/replies/" + "x" * 61, json={"operator": "bob", "text": "x"})
    assert long.status_code == 422
    assert admin(desk, "DELETE", "/replies/Bye for now").status_code == 204
    gone = admin(desk, "DELETE", "/replies/Bye for now")
    assert gone.status_code == 404
    assert gone.json()["error"] == "No saved reply titled 'Bye for now'."
    assert [r["title"] for r in admin(desk, "GET", "/replies").json()] == ["Checking"]


def test_operator_actions_on_unknown_sessions_say_so(desk: Server) -> None:
    r = admin(desk, "POST", "/handoff/nobody/take", json={"operator": "alice"})
    assert r.status_code == 404 and "No conversation with id nobody" in r.json()["error"]
    r = admin(desk, "POST", "/handoff/nobody/messages", json={"operator": "alice", "text": " "})
    assert r.status_code == 422
    r = admin(desk, "POST", "/handoff/nobody/notes", json={"operator": "alice", "text": "hi"})
    assert r.status_code == 404 and "No conversation with id nobody" in r.json()["error"]
    r = admin(desk, "POST", "/handoff/nobody/notes", json={"operator": "alice", "text": ""})
    assert r.status_code == 422


def stored_text(server: Server) -> str:
    """Every key and value in the server's own Redis (strings, hashes, lists, sets, sorted sets,
    streams) as one text."""
    client = redis.Redis(unix_socket_path=str(server.data_dir / "redis" / "redis.sock"))
    read = {
        b"string": client.get,
        b"hash": client.hgetall,
        b"list": lambda key: client.lrange(key, 0, -1),
        b"set": client.smembers,
        b"zset": lambda key: client.zrange(key, 0, -1),
        b"stream": client.xrange,
    }
    try:
        return "\n".join(f"{key!r} {read[client.type(key)](key)!r}" for key in client.scan_iter())
    finally:
        client.close()


def test_a_conversation_is_erased_everywhere_on_request(desk: Server) -> None:
    """A customer asks to have their conversation deleted: what they wrote and what was written
    to them goes from the history, the reply records, the unanswered queue, the handoff queues
    and the outbox of operator messages; other customers' conversations stay."""
    gone, kept, words = "erase-me", "keep-me", "zebra marmalade 4711"
    assert desk.chat(gone, f"does the {words} come in blue?")["mode"] == "fallback"
    answered = desk.chat(gone, "how do I reset my password?")
    disliked = httpx.post(
        f"{desk.url}/api/chat/{gone}/feedback",
        json={"reply_id": answered["reply_id"], "rating": "down"},
        timeout=30,
    )
    assert disliked.status_code == 204
    assert desk.chat(gone, "Can I talk to a human please?")["state"] == "pending_human"
    assert admin(desk, "POST", f"/handoff/{gone}/take", json={"operator": "alice"}).is_success
    told = {"operator": "alice", "text": f"The {words} is sold out, sorry."}
    assert admin(desk, "POST", f"/handoff/{gone}/messages", json=told).is_success
    assert desk.chat(kept, "is the okapi chutney 4712 vegan?")["mode"] == "fallback"
    before = stored_text(desk)
    assert before.count(words) >= 5 and "okapi chutney 4712" in before
    messages = len(admin(desk, "GET", f"/sessions/{gone}").json()["turns"])

    erased = admin(desk, "DELETE", f"/sessions/{gone}")
    assert erased.status_code == 200, erased.text
    assert erased.json() == {
        "session_id": gone,
        "messages": messages,
        "replies": 3,  # the fallback, the FAQ answer and the hand-off message
        "unanswered": 2,  # the question the FAQ did not answer and the disliked reply
        "operator_messages": 2,  # "You are now talking to alice." and alice's message
        "files": 0,
    }
    after = stored_text(desk)
    assert words not in after and f"{{{gone}}}" not in after
    assert "okapi chutney 4712" in after
    assert admin(desk, "GET", f"/sessions/{gone}").status_code == 404
    assert gone not in str(admin(desk, "GET", "/handoff").json())
    assert gone not in str(admin(desk, "GET", "/unanswered").json())
    again = admin(desk, "DELETE", f"/sessions/{gone}")
    assert again.status_code == 404 and f"No conversation with id {gone}" in again.json()["error"]


def test_a_disliked_reply_becomes_an_faq_entry_that_answers_it(desk: Server) -> None:
    question = "Do you offer student discounts?"
    first = desk.chat("fb", question)
    assert first["mode"] != "faq" and first["reply_id"]
    r = httpx.post(
        f"{desk.url}/api/chat/fb/feedback",
        json={"reply_id": first["reply_id"], "rating": "down"},
        timeout=30,
    )
    assert r.status_code == 204
    unknown = httpx.post(
        f"{desk.url}/api/chat/fb/feedback", json={"reply_id": "nope", "rating": "up"}, timeout=30
    )
    assert unknown.status_code == 404

    items = admin(desk, "GET", "/unanswered").json()
    [item] = [i for i in items if i["reason"] == "thumbs_down" and i["session_id"] == "fb"]
    assert (item["question"], item["reply"]) == (question, first["reply"])

    created = admin(
        desk, "POST", f"/unanswered/{item['id']}/faq", json={"answer": "Yes: 10% off for students."}
    )
    assert created.status_code == 201 and created.json()["question"] == question
    assert item["id"] not in [i["id"] for i in admin(desk, "GET", "/unanswered").json()]

    again = desk.chat("fb-2", question)
    assert (again["mode"], again["reply"]) == ("faq", "Yes: 10% off for students.")


def test_unanswerable_questions_queue_up_and_then_call_a_human(desk: Server) -> None:
    replies = [
        desk.chat("lost", q)
        for q in ["what is the capital of France?", "write me a poem", "how do I cook pasta"]
    ]
    assert [r["mode"] for r in replies] == ["fallback", "fallback", "handoff"]
    fallbacks = [i for i in admin(desk, "GET", "/unanswered").json() if i["session_id"] == "lost"]
    assert [i["reason"] for i in fallbacks] == ["fallback"] * 3
    waiting = [s["session_id"] for s in admin(desk, "GET", "/handoff").json()["waiting"]]
    assert "lost" in waiting


def test_the_team_chat_is_told_when_a_customer_waits(
    desk: Server, team_chat: WebhookReceiver
) -> None:
    """Each customer put in line is posted to the operators' team chat (retried when it answers
    503), with a link to the operator desk and without the customer's words; a webhook that
    refuses is logged and counted, and the customer is in line all the same."""
    team_chat.plan["notify-asks"] = [503]
    assert admin(desk, "GET", "/handoff").is_success  # an operator has the desk open
    asked = desk.chat("notify-asks", "can I talk to a person? my order 7781 never came")
    assert asked["mode"] == "handoff"
    first, second = team_chat.posts_for("notify-asks", count=2)[:2]  # then a reminder
    assert (first["answered"], second["answered"]) == (503, 200)
    assert first == {**second, "answered": 503}
    place = 1 + [s["session_id"] for s in admin(desk, "GET", "/handoff").json()["waiting"]].index(
        "notify-asks"
    )
    line = "next in line" if place == 1 else f"number {place} in line"
    assert second["text"] == (
        "A customer in the web chat (conversation notify-a, as the operator desk shows it) is "
        f"waiting for a person (customer asked for a human); they are {line}. Open the operator "
        "desk: https://support.example.com/operator"
    )
    assert (second["channel"], second["place"], second["operators_online"]) == ("web", place, True)
    assert second["operator_desk"] == "https://support.example.com/operator"
    assert "7781" not in str(second) and "order" not in str(second)

    team_chat.plan["notify-stuck"] = [404]
    for question in ["what is the capital of Peru?", "sing me a song", "how do I bake bread"]:
        stuck = desk.chat("notify-stuck", question)
    assert stuck["mode"] == "handoff"
    refused = team_chat.posts_for("notify-stuck")[0]
    assert refused["reason"] == "3 questions in a row the FAQ does not answer"
    assert refused["answered"] == 404
    waiting = [s["session_id"] for s in admin(desk, "GET", "/handoff").json()["waiting"]]
    assert "notify-stuck" in waiting
    log = desk.data_dir / "server.log"
    deadline = time.monotonic() + 10  # the webhook's answer is logged after the receiver has it
    while "session notify-stuck" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "Could not tell the operators that session notify-stuck waits" in log.read_text()
    assert "it answered 404 Not Found" in log.read_text()
    assert team_chat.url not in log.read_text()  # it carries the chat's secret
    metrics = httpx.get(f"{desk.url}/metrics", timeout=10).text
    assert 'answerdesk_handoff_notifications_total{result="failed"} 1.0' in metrics
    assert 'answerdesk_handoff_notifications_total{result="sent"}' in metrics


def test_the_team_chat_webhook_can_be_tried(
    desk: Server, team_chat: WebhookReceiver, server: Server
) -> None:
    """`answerdesk test-webhook` posts a test notification and says how the team chat
    answered; a refusal is a clear error (without the URL, the chat's secret); with no webhook
    set it says what to set."""
    done = desk.cli("test-webhook")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "Posted a test notification; the team chat answered 200 OK. Look for it there."
    )
    [posted] = [p for p in list(team_chat.posts) if p.get("event") == "test"]
    assert posted["text"].startswith("answerdesk is connected: customers who ask for a person")
    assert posted["text"].endswith("The operator desk: https://support.example.com/operator")
    team_chat.plan[None] = [404]  # type: ignore[index]  # (the test has no session)
    refused = desk.cli("test-webhook")
    assert refused.returncode == 1
    assert "did not take the test notification: it answered 404 Not Found" in refused.stderr
    assert team_chat.url not in refused.stderr + refused.stdout
    unset = server.cli("test-webhook")
    assert unset.returncode == 1 and "ANSWERDESK_HANDOFF_WEBHOOK_URL is not set" in unset.stderr


def test_a_near_miss_becomes_a_phrasing_of_the_entry_it_meant(desk: Server) -> None:
    """The customer's words miss the answer threshold; the operator sees what was suggested,
    files the question under the entry it meant, and the next customer asking so is answered."""
    question = "i need to send back a jacket that is too small"
    first = desk.chat("near-1", question)
    assert first["mode"] == "fallback"
    [item] = [i for i in admin(desk, "GET", "/unanswered").json() if i["session_id"] == "near-1"]
    assert item["suggested"] == [s["id"] for s in first["suggestions"]]
    assert "returns-how" in item["suggested"]

    missing = admin(desk, "POST", f"/unanswered/{item['id']}/alias", json={"entry_id": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["error"]
    filed = admin(desk, "POST", f"/unanswered/{item['id']}/alias", json={"entry_id": "returns-how"})
    assert filed.status_code == 200 and question in filed.json()["alt_questions"]
    assert item["id"] not in [i["id"] for i in admin(desk, "GET", "/unanswered").json()]

    again = desk.chat("near-2", question)
    assert again["mode"] == "faq" and again["sources"][0]["id"] == "returns-how"

    # The same from the command line.
    desk.chat("near-3", "the tracking link shows nothing at all")
    listed = desk.kb("unanswered")
    [line] = [x for x in listed.stdout.splitlines() if "\tnear-3\t" in x]
    wrong = desk.kb("alias", "near-3", "orders-track")
    assert wrong.returncode == 2 and "is not an unanswered question's id" in wrong.stderr
    result = desk.kb("alias", line.split("\t")[0], "orders-track")
    assert result.returncode == 0, result.stderr
    assert desk.chat("near-4", "the tracking link shows nothing at all")["mode"] == "faq"


def test_the_unanswered_queue_reads_by_topic(desk: Server) -> None:
    """Two customers miss the FAQ with one question in other words: one topic, over the API
    and on the command line."""
    for session, question in [
        ("kayak-1", "do you rent out kayaks"),
        ("kayak-2", "can I hire a kayak from you?"),
    ]:
        assert desk.chat(session, question)["mode"] == "fallback", question
    topics = admin(desk, "GET", "/unanswered/topics").json()
    [kayak] = [t for t in topics if "kayak-1" in [i["session_id"] for i in t["items"]]]
    assert (kayak["question"], kayak["asked"]) == ("do you rent out kayaks", 2)
    assert [i["session_id"] for i in kayak["items"]] == ["kayak-1", "kayak-2"]
    listed = desk.kb("unanswered", "--topics")
    assert listed.returncode == 0, listed.stderr
    assert "asked 2 times: do you rent out kayaks\n" in listed.stdout
    assert "\tkayak-2\tcan I hire a kayak from you?" in listed.stdout


def test_the_figures_show_how_the_assistant_did(desk: Server) -> None:
    """Every message is counted by how it was answered, in Redis (shared by every worker), and
    every customer an operator took with how long they had waited and how the customer rated
    their help; the operators read the figures of the last days over the API and with
    `answerdesk stats`."""

    def totals() -> dict:
        figures = admin(desk, "GET", "/stats?days=2").json()  # today and yesterday, there
        assert figures["time_zone"] == ZONE
        today = datetime.now(ZoneInfo(ZONE)).date()
        # A run that began shortly before the zone's date met UTC's (00:00 or 12:00
        # UTC) may get here after it: the days are still checked, as the zone's.
        days = [d["day"] for d in figures["days"]]
        assert days == [(today - timedelta(days=1)).isoformat(), today.isoformat()]
        return figures["total"]

    before = totals()
    faq = desk.chat("figures-1", "how do I reset my password?")
    unknown = desk.chat("figures-1", "what is the capital of Peru?")
    desk.chat("figures-1", "thanks!")
    desk.chat("figures-2", "talk to a human please")
    desk.chat("figures-2", "hello? anyone?")
    time.sleep(1.2)  # the customer waits a little before Nina takes them
    taken = admin(desk, "POST", "/handoff/figures-2/take", json={"operator": "Nina"})
    assert taken.status_code == 200, taken.text
    for rating in ("up", "down"):  # a customer changes their mind: it counts once, as the last
        rated = httpx.post(
            f"{desk.url}/api/chat/figures-1/feedback",
            json={"reply_id": faq["reply_id"], "rating": rating},
            timeout=30,
        )
        assert rated.status_code == 204, rated.text
    released = admin(desk, "POST", "/handoff/figures-2/release", json={"operator": "Nina"})
    assert released.status_code == 200, released.text
    # The message that ends Nina's conversation lets the customer rate her help.
    [ended] = [
        m
        for m in admin(desk, "GET", "/outbox/web").json()
        if m["session_id"] == "figures-2" and m["text"].startswith("You are back")
    ]
    assert ended["operator"] == "Nina" and ended["rating_id"]
    for rating in ("down", "up"):
        rated = httpx.post(
            f"{desk.url}/api/chat/figures-2/feedback",
            json={"reply_id": ended["rating_id"], "rating": rating},
            timeout=30,
        )
        assert rated.status_code == 204, rated.text
    after = totals()
    assert (faq["mode"], unknown["mode"]) == ("faq", "fallback")
    changed = {k: after[k] - before[k] for k in after if k not in ("answered", "average_wait_s")}
    waited = changed.pop("waited_s")
    assert 1 <= waited <= 60, waited
    assert changed == {
        "conversations": 2,
        "messages": 5,
        "faq": 1,
        "grounded": 0,
        "fallback": 1,
        "suggested": 1 if unknown["suggestions"] else 0,
        "smalltalk": 1,
        "handoff": 2,  # the request, and the message sent while waiting
        "handoffs": 1,
        "taken": 1,
        "thumbs_up": 0,
        "thumbs_down": 1,
        "operator_up": 1,
        "operator_down": 0,
    }
    unanswered = admin(desk, "GET", "/unanswered").json()
    assert "figures-2" not in [i["session_id"] for i in unanswered]  # not a question missed
    asked = after["faq"] + after["grounded"] + after["fallback"]
    assert after["answered"] == (after["faq"] + after["grounded"]) / asked
    assert after["average_wait_s"] == after["waited_s"] / after["taken"]
    report = admin(desk, "GET", "/stats?days=2").json()
    nina = {"operator": "Nina", "taken": 1, "thumbs_up": 1, "thumbs_down": 0}
    assert nina in report["operators"]
    top = report["top_entries"]
    password = faq["sources"][0]["id"]
    assert {"id": password, "question": faq["sources"][0]["question"]}.items() <= next(
        t for t in top if t["id"] == password
    ).items()
    assert admin(desk, "GET", "/stats?days=0").status_code == 422

    printed = desk.cli("stats", "--days", "2")
    assert printed.returncode == 0, printed.stderr
    lines = printed.stdout.splitlines()
    assert lines[0].split("\t") == [
        "day", "conversations", "messages", "answered", "faq", "grounded", "fallback",
        "handoffs", "taken", "average_wait", "thumbs_up", "thumbs_down", "operator_up",
        "operator_down",
    ]  # fmt: skip
    total = next(line for line in lines if line.startswith("total\t")).split("\t")
    assert total[1:3] == [str(after["conversations"]), str(after["messages"])]
    assert total[3] == f"{after['answered']:.0%}"
    assert f"{password}\t{faq['sources'][0]['question']}" in printed.stdout
    assert re.fullmatch(r"\d+ s|\d+ min( \d+ s)?|\d+ h \d+ min", total[9]), total
    assert "\ncustomers taken by, and their ratings of the help:\n" in printed.stdout
    assert re.search(r"^1\t👍 1\t👎 0\tNina$", printed.stdout, re.M)


def test_operators_read_the_latest_conversations(desk: Server) -> None:
    """The operator API lists conversations by their customer's last message, latest first,
    with what the assistant answered and how, page by page; an erased one is gone from it."""
    first = desk.chat("recent-a", "how do I reset my password?")
    desk.chat("recent-b", "what is the capital of Peru?")
    desk.chat("recent-a", "thanks!")  # a's customer wrote last
    latest = admin(desk, "GET", "/sessions?count=2").json()
    assert [s["session_id"] for s in latest] == ["recent-a", "recent-b"]
    assert latest[0]["last_message"] > latest[1]["last_message"]
    said = [(t["role"], t["mode"], t["text"]) for t in latest[0]["turns"]]
    assert said[:2] == [
        ("user", None, "how do I reset my password?"),
        ("assistant", "faq", first["reply"]),
    ]
    page = admin(desk, "GET", f"/sessions?count=1&before={latest[0]['last_message']}").json()
    assert [s["session_id"] for s in page] == ["recent-b"]
    assert admin(desk, "DELETE", "/sessions/recent-b").status_code == 200
    after = admin(desk, "GET", f"/sessions?before={latest[0]['last_message']}").json()
    assert "recent-b" not in [s["session_id"] for s in after]
    desk.chat("recent-c", "how do I create an account?")
    desk.chat("recent-c", "/reset")  # forgotten: nothing left to read
    assert "recent-c" not in [s["session_id"] for s in admin(desk, "GET", "/sessions").json()]
    desk.chat("recent-c", "which payment methods do you accept?")
    [again] = [s for s in admin(desk, "GET", "/sessions").json() if s["session_id"] == "recent-c"]
    assert again["turns"][0]["text"] == "which payment methods do you accept?"
    assert admin(desk, "GET", "/sessions?count=201").status_code == 422
    # The one a customer writes about, by their words (any case) or by its id.
    for words in ("Which PAYMENT methods", "recent-c"):
        found = admin(desk, "GET", "/sessions", params={"contains": words}).json()
        assert [s["session_id"] for s in found] == ["recent-c"], words


def test_the_team_chat_is_reminded_once_of_a_customer_still_waiting(
    desk: Server, team_chat: WebhookReceiver
) -> None:
    """A customer no operator has taken after ANSWERDESK_HANDOFF_REMIND_MINUTES (3 s here) is
    posted once more, once."""
    asked = desk.chat("remind-me", "human please")
    assert asked["state"] == "pending_human"
    told, reminded = team_chat.posts_for("remind-me", count=2)[:2]
    assert told["reason"] == "customer asked for a human"
    assert re.fullmatch(r"still not taken after \d+ s", reminded["reason"]), reminded
    assert f"is waiting for a person ({reminded['reason']}); they are" in reminded["text"]
    time.sleep(1.5)  # five more looks for customers waiting long
    assert len(team_chat.posts_for("remind-me", count=3, timeout=0)) == 2


def test_an_answer_clears_the_same_question_asked_again_and_junk_is_dismissed(
    desk: Server,
) -> None:
    """Several customers asked the same thing: answering one of them with a new FAQ entry
    takes the others it now answers off the queue too, and leaves the rest (a question in other
    words, which its entry does not yet reach, stays to be filed under it). An operator drops
    an off-topic question from the queue without answering it."""
    asked = {
        "loyal-1": "do you have a loyalty programme?",
        "loyal-2": "Do you have a loyalty program?",
        "loyal-3": "is there a rewards program?",
        "loyal-4": "write me a poem about socks",
    }
    for session, question in asked.items():
        assert desk.chat(session, question)["mode"] == "fallback", question
    queued = {
        i["session_id"]: i["id"]
        for i in admin(desk, "GET", "/unanswered").json()
        if i["session_id"] in asked
    }
    answer = {"answer": "Yes: Pinecone Points, 1 point per euro; 100 points make 5 euros off."}
    made = admin(desk, "POST", f"/unanswered/{queued['loyal-1']}/faq", json=answer)
    assert made.status_code == 201, made.text
    assert made.json()["question"] == asked["loyal-1"]
    assert made.json()["resolved"] == [queued["loyal-2"]]
    left = {i["id"] for i in admin(desk, "GET", "/unanswered").json()}
    assert {queued["loyal-3"], queued["loyal-4"]} <= left
    assert not {queued["loyal-1"], queued["loyal-2"]} & left
    assert desk.chat("loyal-5", "Do you have a loyalty program?")["mode"] == "faq"

    filed = admin(
        desk, "POST", f"/unanswered/{queued['loyal-3']}/alias", json={"entry_id": made.json()["id"]}
    )
    assert filed.status_code == 200 and filed.json()["resolved"] == []
    assert admin(desk, "DELETE", f"/unanswered/{queued['loyal-4']}").status_code == 204
    left = {i["id"] for i in admin(desk, "GET", "/unanswered").json()}
    assert not set(queued.values()) & left
    gone = admin(desk, "DELETE", f"/unanswered/{queued['loyal-4']}")
    assert gone.status_code == 404 and "No unanswered question" in gone.json()["error"]


def test_cli_lists_the_unanswered_queue(desk: Server) -> None:
    desk.chat("cli", "who won the football match yesterday")
    result = desk.kb("unanswered")
    assert result.returncode == 0, result.stderr
    [line] = [x for x in result.stdout.splitlines() if "\tcli\twho won the football" in x]
    assert line.split("\t")[1:] == ["fallback", "cli", "who won the football match yesterday"]
    item = line.split("\t")[0]
    dismissed = desk.kb("dismiss", item)
    assert dismissed.returncode == 0 and dismissed.stdout.strip() == f"dismissed {item}"
    assert item not in desk.kb("unanswered").stdout
    again = desk.kb("dismiss", item)
    assert again.returncode == 1 and f"No unanswered question with id {item}." in again.stderr


def test_resent_messages_and_floods_get_clear_errors(desk: Server) -> None:
    body = {"session_id": "flood", "message": "how do I reset my password?", "message_id": "m1"}
    assert httpx.post(f"{desk.url}/api/chat", json=body, timeout=30).status_code == 200
    resent = httpx.post(f"{desk.url}/api/chat", json=body, timeout=30)
    assert resent.status_code == 409 and "already received" in resent.json()["error"]

    statuses = []
    for i in range(25):  # the default limit is 20 messages a minute per customer
        body = {"session_id": "flood", "message": f"how do I reset my password? {i}"}
        statuses.append(httpx.post(f"{desk.url}/api/chat", json=body, timeout=30))
    limited = [r for r in statuses if r.status_code == 429]
    assert len(limited) >= 5 and all(r.status_code in (200, 429) for r in statuses)
    assert int(limited[0].headers["retry-after"]) >= 1
    assert "faster than I can answer" in limited[0].json()["error"]


def test_the_openapi_schema_documents_the_operator_api(desk: Server) -> None:
    schema = httpx.get(f"{desk.url}/openapi.json", timeout=30).json()
    paths = set(schema["paths"])
    assert {
        "/admin/handoff",
        "/admin/handoff/{session_id}/take",
        "/admin/handoff/{session_id}/messages",
        "/admin/handoff/{session_id}/release",
        "/admin/unanswered",
        "/admin/unanswered/{item_id}/faq",
        "/admin/unanswered/{item_id}/alias",
        "/api/chat/{session_id}/feedback",
    } <= paths
