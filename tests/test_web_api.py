"""The web API as sites and developers use it: site keys and origins, server-made sessions,
Server-Sent Events, and the OpenAI-compatible API through the official `openai` client."""

import json
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from tests.server import Server

ADMIN = {"authorization": "Bearer web-admin"}
SHOP = "http://shop.127.0.0.1.nip.test:8080"
RESET_ANSWER_START = 'Click "Sign in", then "Forgot password?"'


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    # Long replies, so that a stream cut short is clearly cut short.
    env = {"ANSWERDESK_ADMIN_TOKEN": "web-admin", "ANSWERDESK_MAX_NEW_TOKENS": "400"}
    running = Server(tmp_path_factory.mktemp("web-data"), extra_env=env).start()
    yield running
    running.stop()


def add_site(web: Server, origins: list[str], **style: str) -> dict:
    r = httpx.post(
        f"{web.url}/admin/sites",
        json={"name": "Shop", "origins": origins, **style},
        headers=ADMIN,
        timeout=30,
    )
    assert r.status_code == 201, r.text
    return r.json()


def new_session(web: Server, key: str, origin: str | None = None) -> str:
    headers = {"x-site-key": key, **({"origin": origin} if origin else {})}
    r = httpx.post(f"{web.url}/api/sessions", headers=headers, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["session_id"])


def test_sites_sessions_and_origins(web: Server) -> None:
    privacy = "https://shop.example/privacy#chat"
    site = add_site(web, [SHOP], colour="#0a7", title="Shop help", privacy_url=privacy)
    other = add_site(web, ["https://other.example"])
    assert site["key"].startswith("pk_") and site["key"] != other["key"]

    r = httpx.post(f"{web.url}/api/sessions", headers={"x-site-key": site["key"]}, timeout=30)
    body = r.json()
    assert body["site"] == {
        "title": "Shop help",
        "greeting": body["site"]["greeting"],
        "colour": "#0a7",
        "language": "en",
        "privacy_url": privacy,
    }
    session = body["session_id"]
    assert len(session) >= 32  # 24 random bytes, URL-safe: 192 bits

    ask = {"session_id": session, "message": "how do I reset my password?"}
    ok = httpx.post(
        f"{web.url}/api/chat", json=ask, headers={"x-site-key": site["key"], "origin": SHOP}
    )
    assert ok.status_code == 200 and ok.json()["mode"] == "faq"
    # Another site's key, an unknown key, a foreign origin, a made-up session: refused.
    stolen = httpx.get(
        f"{web.url}/api/chat/{session}/history", headers={"x-site-key": other["key"]}
    )
    assert stolen.status_code == 404
    assert (
        httpx.post(f"{web.url}/api/chat", json=ask, headers={"x-site-key": "pk_nope"}).status_code
        == 403
    )
    foreign = httpx.post(
        f"{web.url}/api/chat",
        json=ask,
        headers={"x-site-key": site["key"], "origin": "https://evil.example"},
    )
    assert foreign.status_code == 403 and "not allowed" in foreign.json()["error"]
    made_up = {"session_id": "guessed-session", "message": "hello"}
    r = httpx.post(f"{web.url}/api/chat", json=made_up, headers={"x-site-key": site["key"]})
    assert r.status_code == 404 and "POST /api/sessions" in r.json()["error"]


def test_operators_see_the_page_the_customer_writes_from(web: Server) -> None:
    """The widget sends the page's address with each message; operators see the last one,
    without its query or fragment (which may carry a customer's data). An address that is not
    a web page's is refused, and nothing of that message is stored."""
    site = add_site(web, [SHOP])
    session = new_session(web, site["key"], SHOP)
    headers = {"x-site-key": site["key"], "origin": SHOP}

    def ask(message: str, page: str) -> httpx.Response:
        body = {"session_id": session, "message": message, "page": page}
        return httpx.post(f"{web.url}/api/chat", json=body, headers=headers, timeout=60)

    assert ask("How much is shipping?", f"{SHOP}/checkout?email=ann%40x.example#pay").is_success
    stored = httpx.get(f"{web.url}/admin/sessions/{session}", headers=ADMIN, timeout=30).json()
    assert stored["page"] == f"{SHOP}/checkout"
    refused = ask("And returns?", "javascript:alert(1)")
    assert refused.status_code == 422
    assert "page must be a web page's http:// or https:// address" in refused.json()["error"]
    stored = httpx.get(f"{web.url}/admin/sessions/{session}", headers=ADMIN, timeout=30).json()
    assert stored["page"] == f"{SHOP}/checkout" and len(stored["turns"]) == 2


def test_a_customer_deletes_the_conversation(web: Server) -> None:
    """DELETE /api/chat/{id} erases the conversation once the reply being written is stored,
    so nothing of it comes back; only the site that owns the conversation may delete it."""
    site = add_site(web, [SHOP])
    other = add_site(web, ["https://other.example"])
    session = new_session(web, site["key"])
    mine, theirs = {"x-site-key": site["key"]}, {"x-site-key": other["key"]}
    url = f"{web.url}/api/chat/{session}"
    assert httpx.delete(url, headers=theirs, timeout=30).status_code == 404
    ask = {"session_id": session, "message": "is there a shop in berlin"}  # the model answers
    events = []
    with (
        ThreadPoolExecutor(1) as pool,
        httpx.stream(
            "POST", f"{web.url}/api/chat/stream", json=ask, headers=mine, timeout=120
        ) as stream,
    ):
        lines = stream.iter_lines()
        events.append(next(line for line in lines if line.startswith("event:")))
        # The first piece of the reply is here, so the reply is being written: delete now.
        deleting = pool.submit(httpx.delete, url, headers=mine, timeout=120)
        events += [line for line in lines if line.startswith("event:")]
        deleted = deleting.result()
    assert events[0] == "event: token" and events[-1] == "event: done"
    assert deleted.status_code == 204
    history = httpx.get(f"{url}/history", headers=mine, timeout=30)
    assert history.status_code == 404 and "POST /api/sessions" in history.json()["error"]
    assert httpx.delete(url, headers=mine, timeout=30).status_code == 404


def test_a_near_miss_lists_the_closest_faq_questions(web: Server) -> None:
    body = {"session_id": "near-miss", "message": "i need to send back a jacket that is too small"}
    reply = httpx.post(f"{web.url}/api/chat", json=body, timeout=60).json()
    assert reply["mode"] == "fallback" and reply["sources"] == []
    first = reply["suggestions"][0]
    assert (first["id"], first["question"]) == ("returns-how", "How do I return an item?")
    assert f"- {first['question']}" in reply["reply"].splitlines()  # for clients without buttons
    body["message"] = first["question"]
    assert httpx.post(f"{web.url}/api/chat", json=body, timeout=60).json()["mode"] == "faq"
    body = {"session_id": "off-topic", "message": "write me a poem"}
    assert httpx.post(f"{web.url}/api/chat", json=body, timeout=60).json()["suggestions"] == []


def test_cors_answers_only_registered_origins(web: Server) -> None:
    add_site(web, ["http://127.0.0.1:9999"])
    time.sleep(0.2)  # a new site's origin is taken at its first request 0.1 s after the last read
    preflight = {
        "access-control-request-method": "POST",
        "access-control-request-headers": "content-type,x-site-key",
    }
    allowed = httpx.options(
        f"{web.url}/api/chat", headers={"origin": "http://127.0.0.1:9999", **preflight}
    )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "http://127.0.0.1:9999"
    refused = httpx.options(
        f"{web.url}/api/chat", headers={"origin": "https://evil.example", **preflight}
    )
    assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers


def test_sse_sends_tokens_before_the_reply_is_complete(web: Server) -> None:
    body = {"session_id": "sse-1", "message": "can I pay later"}
    tokens = 0
    with httpx.stream("POST", f"{web.url}/api/chat/stream", json=body, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            tokens += line == "event: token"
            if tokens == 4:
                # Four pieces of text are here while the reply is not complete (not stored).
                history = httpx.get(f"{web.url}/api/chat/sse-1/history", timeout=30).json()
                assert history["turns"] == []
                break
    assert tokens == 4
    body = {"session_id": "sse-4", "message": "how do I reset my password?"}
    with httpx.stream("POST", f"{web.url}/api/chat/stream", json=body, timeout=120) as r:
        lines = [line for line in r.iter_lines() if line]
    assert lines[0] == "event: done"  # an FAQ answer comes whole, in one event
    assert json.loads(lines[1].removeprefix("data: "))["reply"].startswith(RESET_ANSWER_START)


def test_a_client_that_disconnects_stops_the_generation(web: Server) -> None:
    body = {"session_id": "sse-2", "message": "can I pay later"}
    with httpx.stream("POST", f"{web.url}/api/chat/stream", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line == "event: token":
                break  # the customer closed the widget
    # Uncancelled, that reply would hold the model for ~20 s (400 tokens); the next one starts
    # at once.
    started = time.monotonic()
    body = {"session_id": "sse-3", "message": "can I pay later"}
    with httpx.stream("POST", f"{web.url}/api/chat/stream", json=body, timeout=120) as r:
        for line in r.iter_lines():
            if line == "event: token":
                break
    assert time.monotonic() - started < 8


def test_operator_messages_arrive_as_events(web: Server) -> None:
    session = new_session(web, "demo")
    ask = {"session_id": session, "message": "I want to talk to a human"}
    assert httpx.post(f"{web.url}/api/chat", json=ask, timeout=60).json()["mode"] == "handoff"
    assert httpx.post(
        f"{web.url}/admin/handoff/{session}/take", json={"operator": "eve"}, headers=ADMIN
    ).is_success
    received: list[str] = []
    with httpx.stream("GET", f"{web.url}/api/chat/{session}/events", timeout=30) as r:
        httpx.post(
            f"{web.url}/admin/handoff/{session}/messages",
            json={"operator": "eve", "text": "Eve here, how can I help?"},
            headers=ADMIN,
        )
        for line in r.iter_lines():
            if line.startswith("data: "):
                received.append(line)
            if len(received) == 2:
                break
    # The notice of the take (seconds before the customer connected) and the message, with
    # the conversation's state (the widget offers 📎 while a person has it).
    assert received == [
        'data: {"text": "You are now talking to eve.", "operator": "eve", "state": "human"}',
        'data: {"text": "Eve here, how can I help?", "operator": "eve", "state": "human"}',
    ]


def test_the_official_openai_client_gets_faq_answers(web: Server) -> None:
    client = openai.OpenAI(base_url=f"{web.url}/v1", api_key="demo", max_retries=0)
    # the default, and the shipped grounding adapter (it is the default) by its name
    assert [m.id for m in client.models.list()] == ["default", "grounding"]
    question = [{"role": "user", "content": "how do I reset my password?"}]
    reply = client.chat.completions.create(model="default", messages=question)
    assert reply.choices[0].message.content.startswith(RESET_ANSWER_START)
    assert reply.model_extra["answerdesk"]["mode"] == "faq"

    stream = client.chat.completions.create(model="default", messages=question, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text.startswith(RESET_ANSWER_START)

    raw = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        extra_body={"raw": True},
    )
    raw_text = raw.choices[0].message.content
    assert raw_text.strip()
    words = raw_text.split()
    assert len(words) >= 2
    stopped = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "Say hello."}],
        max_tokens=8,
        stop=[words[1]],
        extra_body={"raw": True},
    )  # the model's reply, cut before the stop string
    assert (
        stopped.choices[0].message.content.strip() == raw_text[: raw_text.index(words[1])].strip()
    )

    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="gpt-9", messages=question)
    with pytest.raises(openai.BadRequestError, match="messages"):
        client.chat.completions.create(model="default", messages=[])
    bad_key = openai.OpenAI(base_url=f"{web.url}/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError, match="site key"):
        bad_key.chat.completions.create(model="default", messages=question)


def test_sites_from_the_command_line(web: Server, tmp_path: Path) -> None:
    added = web.cli("sites", "add", "Corner shop", "--origin", "https://corner.example")
    assert added.returncode == 0, added.stderr
    key = added.stdout.split("site key: ")[1].split()[0]
    assert f'data-site-key="{key}"' in added.stdout
    listed = web.cli("sites", "list")
    assert f"{key}\tCorner shop\thttps://corner.example" in listed.stdout
    bad = web.cli("sites", "add", "Bad", "--origin", "corner.example/path")
    assert bad.returncode != 0 and "must look like https://shop.example" in bad.stderr
    notice = ["--origin", "https://corner.example", "--privacy-url", "corner.example/privacy"]
    bad = web.cli("sites", "add", "Bad", *notice)
    assert bad.returncode != 0
    assert "privacy_url 'corner.example/privacy' must be a web address" in bad.stderr
    assert web.cli("sites", "rm", key).returncode == 0
    assert key not in web.cli("sites", "list").stdout
