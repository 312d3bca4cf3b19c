"""The widget as a customer meets it: a shop's page on another origin embeds one script tag;
Debian's chromium, driven by Playwright, talks to it. Screenshots go to test-artifacts/."""

import asyncio
import re
import shutil
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from playwright.async_api import (
    Browser,
    Locator,
    Page,
    Request,
    Route,
    async_playwright,
    expect,
)

from tests.pictures import png
from tests.server import Server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ADMIN = {"authorization": "Bearer widget-admin"}
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
HOST_PAGE = """<!doctype html><html><head><title>Pinecone Outfitters</title>
<style>* {{ color: red !important; font-size: 40px !important; }}
button {{ display: none; }}</style>
</head><body><h1>Pinecone Outfitters</h1><p>Jackets, tents and boots.</p>
<script src="{server}/widget.js" data-site-key="{key}" async></script></body></html>"""


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, (
        "No browser: install Debian's chromium (`apt-get install chromium`); `make test` does "
        "this itself when run as root."
    )
    return path


class ShopSite:
    """A business's own web site on its own origin (127.0.0.1, another port)."""

    def __init__(self) -> None:
        self.html = ""
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write(site.html.encode())

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {"ANSWERDESK_ADMIN_TOKEN": "widget-admin"}
    running = Server(tmp_path_factory.mktemp("widget-data"), extra_env=env).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    """One Chromium for the module's tests (each opens pages or a context of its own)."""
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        yield launched
        await launched.close()


PRIVACY = "https://pinecone.example/privacy"


# The widget's conversation id (its other keys, `…:state` and `…:seen`, end so).
SESSION_IN_STORAGE = (
    "Object.entries(localStorage)"
    ".find(([k]) => k.startsWith('answerdesk:') && !/:(state|seen)$/.test(k))?.[1]"
)


def register(web: Server, origin: str) -> str:
    body = {
        "name": "Pinecone",
        "origins": [origin],
        "title": "Pinecone help",
        "colour": "#0f766e",
        "privacy_url": PRIVACY,
    }
    r = httpx.post(f"{web.url}/admin/sites", json=body, headers=ADMIN, timeout=30)
    assert r.status_code == 201, r.text
    return str(r.json()["key"])


async def open_chat(page: Page) -> tuple[Locator, Locator]:
    """Open the widget: its dialog and the customer's message box."""
    await page.get_by_role("button", name="Open chat").click()
    dialog = page.get_by_role("dialog", name="Chat")
    await expect(dialog).to_be_visible()
    return dialog, dialog.get_by_label("Your message")


async def send(box: Locator, text: str) -> None:
    """The customer types `text` into the message box and presses Enter."""
    await box.fill(text)
    await box.press("Enter")


async def test_a_customer_chats_in_the_widget_on_a_shop_page(web: Server, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    shop = ShopSite()
    shop.html = HOST_PAGE.format(server=web.url, key=register(web, shop.url))
    page = await browser.new_page()
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    try:
        await page.goto(shop.url + "/")
        dialog, message = await open_chat(page)
        await expect(dialog.get_by_role("heading")).to_have_text("Pinecone help")
        await expect(message).to_be_focused()
        notice = dialog.get_by_role("link", name="How we handle your messages")
        await expect(notice).to_have_attribute("href", PRIVACY)
        await expect(notice).to_have_attribute("target", "_blank")

        await send(message, "how do I reset my password?")
        answer = dialog.locator(".m.bot").nth(1)
        await expect(answer).to_contain_text('Click "Sign in", then "Forgot password?"')
        await expect(answer.locator(".note")).to_have_text(
            "From our FAQ: How do I reset my password?"
        )
        # The host page's hostile CSS did not reach into the widget.
        colour = await answer.locator(".t").evaluate("e => getComputedStyle(e).color")
        assert colour == "rgb(17, 17, 17)"
        await page.screenshot(path=str(ARTIFACTS / "widget-answer.png"))

        # A generated answer streams in: text shows while the typing indicator is still on.
        # Every change of the chat log is recorded in the page, because a short reply can
        # stream in faster than a locator polls.
        await dialog.locator(".log").evaluate(
            """log => {
                window.shownWhileTyping = [];
                new MutationObserver(() => {
                    const t = log.querySelector(".m.bot.typing .t");
                    if (t && t.textContent) window.shownWhileTyping.push(t.textContent);
                }).observe(log, { childList: true, subtree: true, characterData: true });
            }"""
        )
        await send(message, "is there a shop in berlin")
        await expect(dialog.locator(".m.bot")).to_have_count(3)
        await expect(dialog.locator(".m.bot.typing")).to_have_count(0, timeout=120_000)
        generated = await dialog.locator(".m.bot").nth(2).locator(".t").text_content()
        assert generated and "Kastanienallee 12" in generated
        shown: list[str] = await page.evaluate("window.shownWhileTyping")
        assert shown, "no text showed while the typing indicator was on"
        assert len(shown[0]) < len(generated)  # the first piece came before the whole reply

        await answer.get_by_role("button", name="Not helpful").click()
        await expect(answer.get_by_role("button", name="Not helpful")).to_have_attribute(
            "aria-pressed", "true"
        )
        session = await page.evaluate(SESSION_IN_STORAGE)
        async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=30) as admin:
            items = (await admin.get("/admin/unanswered")).json()
        assert [i["reason"] for i in items if i["session_id"] == session] == ["thumbs_down"]

        await page.reload()  # the conversation comes back
        await open_chat(page)
        await expect(dialog.locator(".m.user").first).to_have_text("how do I reset my password?")
        await expect(dialog.locator(".m.bot").first).to_contain_text("Forgot password?")

        await dialog.get_by_role("button", name="Talk to a human").click()
        await expect(dialog.locator(".m.bot").last).to_contain_text("you are next")
        for path, body in [
            ("take", {"operator": "alice"}),
            ("messages", {"operator": "alice", "text": "Hi, Alice here. How can I help?"}),
        ]:
            async with httpx.AsyncClient(base_url=web.url, headers=ADMIN) as admin:
                r = await admin.post(f"/admin/handoff/{session}/{path}", json=body)
            assert r.status_code == 200, r.text
        operator = dialog.locator(".m.operator").last
        await expect(operator).to_contain_text("Alice here", timeout=15_000)
        await page.screenshot(path=str(ARTIFACTS / "widget-operator.png"))

        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await expect(page.get_by_role("button", name="Open chat")).to_be_focused()
        assert all(u.startswith((shop.url, web.url)) for u in requests), requests
    finally:
        shop.close()


SLOW = 30_000  # ms: `make test` runs another test file on the same two cores


async def test_a_customer_deletes_the_conversation_in_the_widget(
    web: Server, browser: Browser
) -> None:
    shop = ShopSite()
    key = register(web, shop.url)
    shop.html = HOST_PAGE.format(server=web.url, key=key)
    page = await browser.new_page()
    try:
        await page.goto(shop.url + "/")
        dialog, message = await open_chat(page)
        await send(message, "how do I reset my password?")
        answer = dialog.locator(".m.bot").nth(1)
        await expect(answer).to_contain_text("Forgot password?", timeout=SLOW)
        first = await page.evaluate(SESSION_IN_STORAGE)
        # Before deleting it, the customer saves a copy: a text file of who wrote what.
        async with page.expect_download() as saving:
            await dialog.get_by_role("button", name="Save a copy of this conversation").click()
        saved = await saving.value
        assert re.fullmatch(r"conversation-\d{4}-\d{2}-\d{2}\.txt", saved.suggested_filename)
        copy = await asyncio.to_thread(Path(await saved.path()).read_text)
        assert copy.startswith("Pinecone help: our conversation\n\n")
        assert ", You:\nhow do I reset my password?\n\n" in copy
        assert re.search(r", Pinecone help:\n.*Forgot password\?", copy)
        delete = dialog.get_by_role("button", name="Delete this conversation")

        page.once("dialog", lambda d: asyncio.ensure_future(d.dismiss()))  # "Cancel"
        await delete.click()
        await expect(dialog.locator(".m.user")).to_have_text(["how do I reset my password?"])
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as client:
            kept = await client.get(f"/api/chat/{first}/history", headers={"x-site-key": key})
        assert [t["role"] for t in kept.json()["turns"]] == ["user", "assistant"]

        # The connection fails: the customer is told nothing was deleted, and it is all there.
        await page.route(f"**/api/chat/{first}", lambda route: route.abort())
        page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await delete.click()
        await expect(dialog.locator(".m.bot").last).to_have_text(
            "Sorry, the connection failed, so nothing was deleted. Please try again."
        )
        await page.unroute(f"**/api/chat/{first}")
        await expect(dialog.locator(".m.user")).to_have_text(["how do I reset my password?"])
        assert await page.evaluate(SESSION_IN_STORAGE) == first

        page.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await delete.click()
        await expect(dialog.locator(".m.bot").first).to_have_text(
            "This conversation has been deleted.", timeout=SLOW
        )
        await expect(dialog.locator(".m")).to_have_count(2, timeout=SLOW)  # and the greeting
        await page.wait_for_function(f"({SESSION_IN_STORAGE}) !== {first!r}", timeout=SLOW)
        async with httpx.AsyncClient(base_url=web.url, timeout=30) as client:
            history = await client.get(f"/api/chat/{first}/history", headers={"x-site-key": key})
        assert history.status_code == 404  # the server kept nothing of it

        await page.reload()
        await open_chat(page)
        await expect(dialog.locator(".m")).to_have_count(1, timeout=SLOW)  # a new one's greeting
        await send(message, "how much does shipping cost?")
        await expect(dialog.locator(".m.bot").last).to_contain_text("4.95 EUR", timeout=SLOW)

        # The server forgets the conversation while the page stays open (an operator deleted it,
        # or it expired): the next question starts a new one instead of showing an error.
        second = await page.evaluate(SESSION_IN_STORAGE)
        before = await dialog.locator(".m").count()
        async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=30) as admin:
            assert (await admin.delete(f"/admin/sessions/{second}")).status_code == 200
        await send(message, "which countries do you ship to?")
        shipping = dialog.locator(".m.bot").last
        await expect(shipping).to_contain_text("We ship to all EU countries", timeout=SLOW)
        await page.wait_for_function(f"({SESSION_IN_STORAGE}) !== {second!r}", timeout=SLOW)
        await expect(dialog.locator(".m")).to_have_count(before + 2)  # the question, its answer
    finally:
        shop.close()


async def test_a_failed_or_refused_question_says_so_and_can_be_asked_again(
    web: Server, browser: Browser
) -> None:
    """No typing indicator left forever: a connection that fails, a reply cut off mid-way and a
    refusal before any reply each end in a message, and the next question is answered."""
    page = await browser.new_page()
    stream = "**/api/chat/stream"
    try:
        await page.goto(web.url + "/")
        dialog, message = await open_chat(page)
        await expect(dialog.locator(".m.bot")).to_have_count(1, timeout=SLOW)  # the greeting
        notice = dialog.get_by_role("link", name="How we handle your messages")
        await expect(notice).to_have_count(0)  # the demo site has no privacy notice
        failed = "Sorry, the connection failed. Please try again."
        cut_off = 'event: token\ndata: {"text": "Standard shipping"}\n\n'  # and then nothing
        refused = {"error": "The service is unavailable; try again in 5 s."}
        for answer, expected in [
            (lambda route: route.abort(), failed),
            (lambda route: route.fulfill(body=cut_off, content_type="text/event-stream"), failed),
            (lambda route: route.fulfill(status=503, json=refused), refused["error"]),
        ]:
            await page.route(stream, answer)
            await send(message, "how much does shipping cost?")
            await expect(dialog.locator(".m.bot").last).to_have_text(expected, timeout=SLOW)
            await expect(dialog.locator(".m.bot.typing")).to_have_count(0)
            await page.unroute(stream)
        await send(message, "how much does shipping cost?")
        await expect(dialog.locator(".m.bot").last).to_contain_text("4.95 EUR", timeout=SLOW)
    finally:
        await page.close()


async def test_a_near_miss_offers_faq_questions_to_tap(web: Server, browser: Browser) -> None:
    """A question near FAQ entries but not close enough to answer from: the closest questions
    come as buttons (not as text lines too); tapping one asks it and gets its answer. The
    conversation comes back after a reload with the offer as buttons, the one taken spent."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page()
    try:
        await page.goto(web.url + "/")  # the demo page, with the demo site key
        dialog, message = await open_chat(page)
        await send(message, "i need to send back a jacket that is too small")
        offer = dialog.locator(".m.bot").nth(1)
        await expect(offer.locator(".t")).to_contain_text("Did you mean:", timeout=15_000)
        suggestion = offer.get_by_role("button", name="How do I return an item?")
        await expect(suggestion).to_be_visible()
        await expect(offer.locator(".t")).not_to_contain_text("- How do I return an item?")
        await page.screenshot(path=str(ARTIFACTS / "widget-suggestions.png"))

        await suggestion.click()
        await expect(dialog.locator(".m.user").last).to_have_text("How do I return an item?")
        await expect(dialog.locator(".m.bot").nth(2)).to_contain_text(
            'Go to "My account" > "Orders", choose the order and click "Return items".'
        )
        await expect(suggestion).to_be_disabled()  # one question per offer
        offered = await offer.locator("button.sg").all_text_contents()

        await page.reload()
        await open_chat(page)
        offer = dialog.locator(".m.bot").filter(has_text="Did you mean:")
        await expect(offer.get_by_role("button", name="How do I return an item?")).to_be_disabled()
        await expect(offer.locator(".t")).not_to_contain_text("- How do I return an item?")
        assert await offer.locator("button.sg").all_text_contents() == offered
    finally:
        await page.close()


async def test_an_operator_answers_from_the_desk_and_teaches_the_faq(
    web: Server, browser: Browser
) -> None:
    """At /operator an operator signs in with their own token (a wrong token is refused),
    sees the customer who asked for a person with their conversation, takes it, is offered the
    FAQ answers for what the customer asked, and writes (what they type survives the desk's
    refresh when the customer writes meanwhile); the customer reads it in the widget, and Bob
    puts his answer in the new FAQ entry's form with one click; handed
    back, it leaves the desk, and the customer rates Bob's help. The question the FAQ missed is
    listed with the entries the assistant suggested: marked as meaning one, it leaves the list
    and the next customer asking so gets that entry's answer."""
    ARTIFACTS.mkdir(exist_ok=True)
    customer, desk = await browser.new_page(), await browser.new_page()
    try:
        await customer.goto(web.url + "/?ref=newsletter#help")
        chat, message = await open_chat(customer)
        await send(message, "how long do I have?")  # near "What is your return policy?"
        offer = chat.locator(".m.bot").nth(1).locator(".t")
        await expect(offer).to_contain_text("Did you mean:", timeout=15_000)
        attach = chat.get_by_role("button", name="Send a photo or file")
        await expect(attach).to_be_hidden()  # the assistant reads only text
        await chat.get_by_role("button", name="Talk to a human").click()
        await expect(chat.locator(".m.bot").last).to_contain_text("I've asked a colleague")
        await expect(attach).to_be_visible()  # for the person they wait for

        bobs_token = operator_token(web, "Bob")  # his own token: no name to type
        await desk.goto(web.url + "/operator")
        await desk.get_by_label("Your token").fill("not-the-token")
        await desk.get_by_role("button", name="Sign in").click()
        await expect(desk.get_by_role("alert")).to_have_text("Wrong token.")
        await desk.get_by_label("Your token").fill(bobs_token)
        await desk.get_by_role("button", name="Sign in").click()
        await expect(desk.locator("#who")).to_have_text("Bob")
        await expect(desk.locator("#present")).to_contain_text(re.compile(r"Here now: .*Bob"))

        handoffs = desk.get_by_role("region", name="Customers waiting for a person")
        theirs = handoffs.get_by_role("article").filter(has_text="how long do I have?")
        await expect(theirs).to_contain_text("I'd like to talk to a human")
        # The page the customer writes from, without its query and fragment.
        page = theirs.get_by_role("link", name=web.url + "/", exact=True)
        await expect(page).to_have_attribute("href", web.url + "/")
        await expect(desk).to_have_title("(1) waiting · answerdesk: operators")  # on its tab
        await theirs.get_by_role("button", name="Take").click()
        await expect(desk).to_have_title("answerdesk: operators")  # taken: nobody waits
        box = theirs.get_by_label("Message to the customer")
        # A reply the team writes again and again is saved once, then picked under the
        # conversation.
        saved = desk.get_by_role("region", name="Saved replies")
        await saved.get_by_label("Saved reply's title").fill("Checking")
        await saved.get_by_label("Saved reply's text").fill("Let me check that for you.")
        await saved.get_by_role("button", name="Save the reply").click()
        await expect(saved.get_by_role("status")).to_have_text("Saved Checking.")
        await theirs.get_by_label("Saved replies").select_option("Checking")
        await expect(box).to_have_value("Let me check that for you.")
        # The FAQ answers for what the customer asked: one click puts one in the message box.
        offered = theirs.get_by_role("group", name="FAQ answers")
        await offered.get_by_role("button", name="What is your return policy?").click()
        await expect(box).to_have_value(re.compile("^You can return unused items"))
        await box.fill("Hi, Bob here")
        typing = chat.locator(".m.operator.typing")  # the customer sees Bob write
        await expect(typing).to_have_text("Bob is typing", timeout=SLOW)
        await message.fill("hello, anyone?")  # the customer writes while Bob types: the desk
        customer_typing = theirs.get_by_text("The customer is typing…")  # shows it, then
        await expect(customer_typing).to_be_visible(timeout=10_000)
        await message.press("Enter")  # the message at its next refresh, and Bob keeps typing
        await expect(theirs).to_contain_text("hello, anyone?", timeout=10_000)
        await expect(customer_typing).to_have_count(0)  # their message ends it
        await expect(box).to_be_focused()
        await box.press_sequentially(": 30 days.")
        await expect(box).to_have_value("Hi, Bob here: 30 days.")
        await chat.get_by_role("button", name="Close chat").click()  # the customer looks away
        await theirs.get_by_role("button", name="Send").click()
        bubble = customer.locator(".bubble")  # counts what they have not seen
        await expect(bubble).to_have_attribute(
            "aria-label", "Open chat (1 new message)", timeout=15_000
        )
        await expect(bubble.locator(".badge")).to_have_text("1")
        await bubble.click()
        await expect(bubble).to_have_attribute("aria-label", "Close chat")
        await expect(bubble.locator(".badge")).to_be_hidden()
        await expect(chat.locator(".m.operator").last).to_contain_text("Bob here")
        await expect(typing).to_have_count(0)  # his message ends it
        # An answer worth keeping goes to the new FAQ entry's form, with what the customer asked.
        sent = theirs.locator(".turn").filter(has_text="Hi, Bob here: 30 days.")
        await sent.get_by_role("button", name="To the FAQ").click()
        new = desk.locator("#new")
        await expect(new.get_by_label("New question")).to_have_value("hello, anyone?")
        await expect(new.get_by_label("New question")).to_be_focused()
        await expect(new.get_by_label("New answer")).to_have_value("Hi, Bob here: 30 days.")
        # The customer sends Bob a photo of the problem; the desk shows it.
        photo = ARTIFACTS / "broken-zip.png"
        photo.write_bytes(png(4, 3))
        await chat.locator("input.file").set_input_files(str(photo))
        await expect(chat.locator(".m.user").last).to_contain_text("📎 broken-zip.png")
        shown = theirs.locator("img.thumb")
        await expect(shown).to_have_attribute("alt", "[image broken-zip.png]", timeout=SLOW)
        await expect(shown).to_have_js_property("naturalWidth", 4)  # the picture itself
        # Bob sends a picture back, with the words he typed; the customer sees both.
        steps = ARTIFACTS / "where-to-click.png"
        steps.write_bytes(png(9, 6))
        await box.fill("Tap the zip here.")
        await theirs.locator('input[type="file"]').set_input_files(str(steps))
        from_bob = chat.locator(".m.operator").filter(has_text="Tap the zip here.")
        await expect(from_bob.locator("img")).to_have_js_property("naturalWidth", 9, timeout=SLOW)
        await expect(from_bob.locator(".t")).to_have_text("Tap the zip here.")
        await expect(box).to_have_value("")
        sent_back = theirs.locator(".turn").filter(has_text="[image where-to-click.png]")
        await expect(sent_back.locator("img.thumb")).to_have_js_property("naturalWidth", 9)
        # The customer goes to another page of the site, the chat closed: it reconnects there,
        # and Bob's next message is counted on the bubble.
        await customer.reload()
        await expect(bubble).to_have_attribute("aria-label", "Open chat")
        await customer.wait_for_function(
            "performance.getEntriesByType('resource').some((e) => e.name.includes('/events'))"
        )
        await box.fill("Anything else I can help with?")
        await theirs.get_by_role("button", name="Send").click()
        await expect(bubble).to_have_attribute(
            "aria-label", "Open chat (1 new message)", timeout=SLOW
        )
        await bubble.click()
        await expect(chat.locator(".m.operator").last).to_contain_text("Anything else")
        await expect(chat.locator(".m.operator").filter(has_text="Tap the zip")).to_have_count(1)
        # A note for colleagues stays at the desk: the customer never sees it.
        await box.fill("Promised a call back tomorrow")
        await theirs.get_by_role("button", name="Add as note").click()
        await expect(theirs.locator(".turn.note")).to_have_text(
            "Note by Bob: Promised a call back tomorrow", timeout=SLOW
        )
        await expect(box).to_have_value("")
        await desk.screenshot(path=str(ARTIFACTS / "operator-desk.png"))
        await theirs.get_by_role("button", name="Hand back to the assistant").click()
        await expect(theirs).to_have_count(0)
        # The customer is asked how Bob did, and says.
        ended = chat.locator(".m.operator").filter(has_text="You are back with the assistant")
        await expect(ended).to_contain_text("How did Bob do?", timeout=15_000)
        await expect(attach).to_be_hidden()  # back with the assistant
        await expect(chat).not_to_contain_text("Promised a call back")
        await ended.get_by_role("button", name="Helpful", exact=True).click()
        await expect(ended.get_by_role("button", name="Helpful", exact=True)).to_have_attribute(
            "aria-pressed", "true"
        )
        async with httpx.AsyncClient(timeout=30) as client:
            figures = (await client.get(f"{web.url}/admin/stats", headers=ADMIN)).json()
        assert {"operator": "Bob", "taken": 1, "thumbs_up": 1, "thumbs_down": 0} in figures[
            "operators"
        ]
        taken_by = desk.get_by_label("Customers taken by")
        await expect(taken_by).to_contain_text("Bob 1 (👍 1 👎 0)", timeout=SLOW)

        missed = desk.get_by_role("region", name="Questions the FAQ did not answer")
        item = missed.get_by_role("article", name="Unanswered: how long do I have?")
        await item.get_by_role("button", name="It meant: What is your return policy?").click()
        await expect(item).to_have_count(0)
        async with httpx.AsyncClient(base_url=web.url, timeout=60) as client:
            ask = {"session_id": uuid.uuid4().hex, "message": "how long do I have?"}
            r = await client.post("/api/chat", json=ask)
        assert r.status_code == 200, r.text
        assert r.json()["mode"] == "faq" and "within 30 days" in r.json()["reply"]
    finally:
        await customer.close()
        await desk.close()


def operator_token(web: Server, name: str) -> str:
    """`answerdesk operators add NAME`: the new operator's own token."""
    added = web.cli("operators", "add", name)
    assert added.returncode == 0, added.stderr
    return added.stdout.split(f"token of {name}: ")[1].split()[0]


async def sign_in(desk: Page, web: Server, name: str, token: str = "") -> None:
    """`name` signs in at the operator desk: with their own `token`, else the admin token."""
    await desk.goto(web.url + "/operator")
    if not token:
        await desk.get_by_label("Your name").fill(name)
    await desk.get_by_label("Your token").fill(token or "widget-admin")
    await desk.get_by_role("button", name="Sign in").click()
    # Signed in: the desk shows (and lists the FAQ by the search box's words at that moment).
    await expect(desk.get_by_role("region", name="The FAQ", exact=True)).to_be_visible()


async def test_the_owner_adds_and_removes_operators_at_the_desk(
    web: Server, browser: Browser
) -> None:
    """Signed in with the admin token, the owner adds an operator at the desk and reads their
    token once; the operator signs in with it under their name. Removed, their desk is signed
    out at its next refresh. An operator's desk has no Operators section."""
    owner, hana = await browser.new_page(), await browser.new_page()
    try:
        await sign_in(owner, web, "Owen")
        team = owner.get_by_role("region", name="Operators")
        await team.get_by_label("New operator's name").fill("Hana")
        await team.get_by_role("button", name="Add an operator").click()
        token = await team.get_by_label("Hana's token").input_value()
        assert token.startswith("op_")
        await expect(team).to_contain_text("Hana · added", timeout=SLOW)

        await sign_in(hana, web, "Hana", token)
        await expect(hana.locator("#who")).to_have_text("Hana", timeout=SLOW)
        await expect(hana.get_by_role("region", name="Operators")).to_be_hidden()

        owner.once("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
        await team.get_by_role("button", name="Remove Hana").click()
        await expect(team).to_contain_text("Removed Hana.", timeout=SLOW)
        await expect(hana.locator("#who")).to_contain_text("wrong bearer token", timeout=SLOW)
    finally:
        await owner.close()
        await hana.close()


async def test_a_desk_left_idle_says_its_operator_is_away(web: Server, browser: Browser) -> None:
    """A desk nobody has touched for 15 minutes (left open overnight) lists the queue as away,
    so customers are told no one is online, and says so; a touch brings it back."""
    desk = await browser.new_page()
    try:
        await desk.clock.install()
        await sign_in(desk, web, "gil")
        await expect(desk.locator("#who")).to_have_text("gil")
        away = "/admin/handoff?present=false"
        async with desk.expect_request(lambda r: away in r.url, timeout=SLOW):
            await desk.clock.fast_forward("16:00")  # the laptop lid closed for 16 minutes
        await expect(desk.locator("#who")).to_have_text("gil · away (idle)")
        async with desk.expect_request(lambda r: "/admin/handoff?present=true" in r.url):
            await desk.mouse.click(2, 200)
            await desk.clock.fast_forward(3000)
        await expect(desk.locator("#who")).to_have_text("gil")
    finally:
        await desk.close()


async def find_entry(desk: Page, words: str, entry_id: str) -> tuple[Locator, Locator]:
    """The desk's FAQ section once a search for `words` shows one entry, `entry_id`, and the
    field with that entry's answer."""
    faq = desk.get_by_role("region", name="The FAQ", exact=True)
    await faq.get_by_label("Find FAQ entries").fill(words)
    await faq.get_by_role("button", name="Find").click()
    await expect(faq.get_by_role("article")).to_have_count(1)
    return faq, faq.get_by_label(f"Answer of {entry_id}")


async def ask(web: Server, question: str) -> dict:
    """The reply to `question`, asked in a new session through the web API."""
    async with httpx.AsyncClient(base_url=web.url, timeout=60) as client:
        r = await client.post(
            "/api/chat", json={"session_id": uuid.uuid4().hex, "message": question}
        )
        assert r.status_code == 200, r.text
        return dict(r.json())


async def ask_until(web: Server, question: str, wanted: str) -> dict:
    """The reply to `question` once it contains `wanted` (an FAQ change reaches every worker
    within a second), or the last reply after 5 s."""
    for _ in range(25):
        reply = await ask(web, question)
        if wanted in reply["reply"]:
            break
        await asyncio.sleep(0.2)
    return reply


async def test_an_operator_deletes_a_conversation_the_customer_wants_gone(
    web: Server, browser: Browser
) -> None:
    session = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=web.url, timeout=60) as client:
        for text in ["my name is Ada Lovelace", "human please", "delete my data: ada@example.org"]:
            r = await client.post("/api/chat", json={"session_id": session, "message": text})
            assert r.status_code == 200, r.text
    desk = await browser.new_page()
    try:
        await sign_in(desk, web, "carol")
        handoffs = desk.get_by_role("region", name="Customers waiting for a person")
        theirs = handoffs.get_by_role("article").filter(has_text="Ada Lovelace")
        # The address they left, to write back to: in what they wrote, and above it.
        address = theirs.get_by_role("link", name="ada@example.org")
        await expect(address).to_have_count(2)
        await expect(address.first).to_have_attribute("href", "mailto:ada@example.org")
        await expect(theirs.get_by_text("To be written to at ada@example.org")).to_be_visible()
        await theirs.get_by_role("button", name="Take").click()
        desk.once("dialog", lambda d: asyncio.ensure_future(d.accept()))
        await theirs.get_by_role("button", name="Delete conversation").click()
        await expect(theirs).to_have_count(0, timeout=SLOW)
        async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=30) as admin:
            assert (await admin.get(f"/admin/sessions/{session}")).status_code == 404
            unanswered = (await admin.get("/admin/unanswered")).json()
        assert session not in [i["session_id"] for i in unanswered]
    finally:
        await desk.close()


async def test_the_desk_shows_how_the_assistant_did(web: Server, browser: Browser) -> None:
    """The desk shows today's and the week's figures as the operator API counts them, and what
    customers asked about most; a new question shows at the next refresh."""
    asked = await ask(web, "how do I reset my password?")
    assert asked["mode"] == "faq"
    async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=30) as admin:
        week = (await admin.get("/admin/stats?days=7")).json()
    today, total = week["days"][-1], week["total"]
    desk = await browser.new_page()
    try:
        await sign_in(desk, web, "dora")
        figures = desk.get_by_role("region", name="How the assistant did")
        table = figures.get_by_role("table", name="Figures")
        await expect(table.get_by_role("columnheader")).to_have_text(  # waits for the table
            [
                "Conversations",
                "Messages",
                "Answered",
                "From the FAQ",
                "By the model",
                "Not known",
                "Handed to a person",
                "Taken",
                "Average wait",
                "Rated 👍",
                "Rated 👎",
            ]
        )
        cells = table.get_by_role("row", name="Today").get_by_role("cell")
        answered = f"{round(today['answered'] * 100)}%"
        await expect(cells).to_have_text(
            [str(today["conversations"]), str(today["messages"]), answered, str(today["faq"])]
            + [str(today[k]) for k in ("grounded", "fallback", "handoffs", "taken")]
            + [re.compile(r"^(\u2013|\d+ s|\d+ min( \d+ s)?|\d+ h \d+ min)$")]
            + [str(today["thumbs_up"]), str(today["thumbs_down"])]
        )
        week_row = table.get_by_role("row", name="Last 7 days").get_by_role("cell")
        await expect(week_row.nth(1)).to_have_text(str(total["messages"]))
        most = figures.get_by_role("list", name="Answered most often")
        await expect(most).to_contain_text(asked["sources"][0]["question"])
        await ask(web, "what is the capital of Peru?")
        await expect(cells.nth(1)).to_have_text(str(today["messages"] + 1), timeout=SLOW)
        ARTIFACTS.mkdir(exist_ok=True)
        await figures.screenshot(path=str(ARTIFACTS / "operator-figures.png"))
    finally:
        await desk.close()


async def test_an_operator_answers_a_question_once_and_dismisses_junk(
    web: Server, browser: Browser
) -> None:
    """Answered at the desk, a question leaves the list with the same question another customer
    asked, and the desk says so; *Dismiss* drops an off-topic one."""
    questions = [
        "do you sell socks made of bamboo?",
        "Do you sell socks made from bamboo?",  # another customer, nearly the same words
        "sing me a song about the sea",
    ]
    for question in questions:
        assert (await ask(web, question))["mode"] == "fallback", question
    desk = await browser.new_page()
    try:
        await sign_in(desk, web, "gus")
        missed = desk.get_by_role("region", name="Questions the FAQ did not answer")
        first, second, junk = (
            missed.get_by_role("article", name=f"Unanswered: {q}") for q in questions
        )
        # Asked twice in other words: one topic, above the question asked once.
        topic = missed.get_by_role("region", name=f"Asked 2 times: {questions[0]}")
        await expect(topic.get_by_role("article")).to_have_count(2)
        await expect(topic.get_by_role("heading")).to_have_text("Asked 2 times, in these words:")
        await first.get_by_label("Answer for the FAQ").fill(
            "Yes: bamboo socks, 3 pairs for 15 euros."
        )
        await first.get_by_role("button", name="Add to the FAQ").click()
        await expect(missed.get_by_role("status")).to_have_text(
            "It also answers 1 other question in the list, which left it too."
        )
        await expect(first).to_have_count(0)
        await expect(second).to_have_count(0)
        await expect(topic).to_have_count(0)
        await expect(junk).to_have_count(1)
        await junk.get_by_role("button", name="Dismiss").click()
        await expect(junk).to_have_count(0)
        assert (await ask(web, "do you sell socks made from bamboo?"))["mode"] == "faq"
    finally:
        await desk.close()


async def test_an_operator_reads_the_latest_conversations(web: Server, browser: Browser) -> None:
    """The desk lists the latest conversations; one opened shows what the assistant answered
    and how, and stays open when a new conversation comes in above it. A search by words
    finds the conversations that have them."""
    asked = await ask(web, "how do I reset my password?")
    desk = await browser.new_page()
    try:
        await sign_in(desk, web, "erin")
        recent = desk.get_by_role("region", name="Recent conversations")
        theirs = recent.locator("details").filter(has_text="how do I reset my password?").first
        await theirs.locator("summary").click()
        await expect(theirs).to_contain_text(f"Assistant (from the FAQ): {asked['reply']}")
        await ask(web, "what is the capital of Peru?")
        newest = recent.locator("details").first
        await expect(newest).to_contain_text("what is the capital of Peru?", timeout=SLOW)
        await expect(newest).not_to_have_attribute("open", "")
        await expect(theirs).to_have_attribute("open", "")
        await newest.locator("summary").click()
        await expect(newest).to_contain_text("Assistant (not known): ")

        await recent.get_by_label("Find conversations").fill("RESET my password")
        await recent.get_by_role("button", name="Find").click()
        await expect(recent.locator("details").first).to_contain_text("reset my password")
        await expect(recent.locator("details").filter(has_text="capital of Peru")).to_have_count(0)
        await recent.get_by_label("Find conversations").fill("no customer wrote this, ever")
        await recent.get_by_role("button", name="Find").click()
        await expect(recent).to_contain_text('No conversation with "no customer wrote this, ever".')
    finally:
        await desk.close()


BACKGROUND_TAB_WITH_NOTIFICATIONS = """
window.shown = [];
Object.defineProperty(document, "hidden", { get: () => true });
window.Notification = class {
  static permission = "granted";
  static requestPermission() { return Promise.resolve("granted"); }
  constructor(title, options) { window.shown.push({ title, ...options }); }
  close() {}
};
"""


async def test_a_desk_in_a_background_tab_notifies_of_each_new_waiting_customer(
    web: Server, browser: Browser
) -> None:
    """The browser's notifications (allowed, the tab hidden) get one for each customer who
    starts waiting after the desk opened, with what they wrote; none for those already there.
    Once the operator has taken the conversation, each message its customer writes is told
    too, and the tab's title counts the conversations waiting for the operator's answer."""
    before = uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=web.url, timeout=60) as client:
        await client.post("/api/chat", json={"session_id": before, "message": "human please"})
    context = await browser.new_context()
    await context.add_init_script(BACKGROUND_TAB_WITH_NOTIFICATIONS)
    desk = await context.new_page()
    try:
        await sign_in(desk, web, "fay")
        waiting = desk.get_by_role("region", name="Customers waiting for a person")
        await expect(waiting.get_by_role("article").first).to_be_visible()
        session = uuid.uuid4().hex
        async with httpx.AsyncClient(base_url=web.url, timeout=60) as client:
            for text in ["my parcel never came", "can I talk to a person?"]:
                r = await client.post("/api/chat", json={"session_id": session, "message": text})
                assert r.status_code == 200, r.text
        await desk.wait_for_function("window.shown.length > 0", timeout=SLOW)
        await desk.wait_for_timeout(2 * 3000)  # two more refreshes: nothing is told twice
        assert await desk.evaluate("window.shown") == [
            {
                "title": "A customer is waiting for a person",
                "body": "can I talk to a person?",
                "tag": session,
            }
        ]
        async with httpx.AsyncClient(base_url=web.url, timeout=60) as client:
            took = f"/admin/handoff/{session}/take"
            assert (await client.post(took, json={"operator": "fay"}, headers=ADMIN)).is_success
            await client.post("/api/chat", json={"session_id": session, "message": "hello?"})
        await desk.wait_for_function("window.shown.length > 1", timeout=SLOW)
        told = await desk.evaluate("window.shown[1]")
        assert (told["title"], told["body"]) == ("A customer wrote to you", "hello?")
        await expect(desk).to_have_title(re.compile(r"\(1\) to answer · answerdesk: operators$"))
    finally:
        await context.close()


async def test_an_operator_edits_and_adds_faq_entries_from_the_desk(
    web: Server, browser: Browser
) -> None:
    """In the desk's FAQ section an operator finds an entry by its words, changes its answer and
    adds a new entry: customers get both at once, word for word. An earlier version of the
    changed entry can be restored from the desk. Each version says who made it."""
    desk = await browser.new_page()
    try:
        await sign_in(desk, web, "Carol", operator_token(web, "Carol"))
        faq, answer = await find_entry(desk, "gift", "gift-cards")
        await expect(answer).to_have_value(re.compile("from 10 to 500 EUR"))
        await answer.fill("Yes: digital gift cards from 10 to 1000 EUR, sent by e-mail.")
        await faq.get_by_role("button", name="Save").click()
        await expect(faq.get_by_role("status")).to_contain_text("Saved gift-cards (version 2)")
        saved = faq.get_by_role("article")
        await expect(saved).to_contain_text("gift-cards · version 2 · by Carol")

        await faq.get_by_label("New question").fill("Do you rent out tents?")
        await faq.get_by_label("New answer").fill("Yes, from 15 EUR a weekend in our Berlin shop.")
        await faq.get_by_role("button", name="Add to the FAQ").click()
        await expect(faq.get_by_role("status")).to_contain_text("Added")
        await expect(faq.get_by_label("Question of do-you-rent-out-tents")).to_be_visible()
        await desk.screenshot(path=str(ARTIFACTS / "operator-faq.png"), full_page=True)
        changed = await ask_until(web, "do you sell gift cards?", "1000 EUR")
        assert changed["mode"] == "faq"
        assert changed["reply"] == "Yes: digital gift cards from 10 to 1000 EUR, sent by e-mail."
        added = await ask_until(web, "Do you rent out tents?", "15 EUR")
        assert added["mode"] == "faq"
        assert added["reply"] == "Yes, from 15 EUR a weekend in our Berlin shop."

        await faq.get_by_label("Find FAQ entries").fill("gift")
        await faq.get_by_role("button", name="Find").click()
        await expect(faq.get_by_role("article")).to_have_count(1)
        gift = faq.get_by_role("article", name="FAQ entry gift-cards")
        await gift.get_by_role("button", name="Earlier versions").click()
        await gift.get_by_role("button", name="Restore version 1").click()
        await expect(faq.get_by_role("status")).to_contain_text("Restored version 1")
        restored_by = faq.get_by_role("article", name="FAQ entry gift-cards").locator(".meta")
        await expect(restored_by.first).to_have_text("gift-cards · version 3 · by Carol")
        await expect(faq.get_by_label("Answer of gift-cards")).to_have_value(
            re.compile("from 10 to 500 EUR")
        )
    finally:
        await desk.close()
    restored = await ask_until(web, "do you sell gift cards?", "500 EUR")
    assert restored["mode"] == "faq" and "from 10 to 500 EUR" in restored["reply"]


async def test_a_late_earlier_listing_leaves_the_entry_being_edited_alone(
    web: Server, browser: Browser
) -> None:
    """The desk lists the FAQ when an operator signs in. When that list comes only after the
    operator's own search (a busy server), it must not replace the found entry, edits and all
    (it did: the Save that followed stored the old answer)."""
    desk = await browser.new_page()
    release = asyncio.Event()
    held: list[Request] = []

    async def hold_the_first(route: Route) -> None:
        if not held:  # the list asked for at sign-in (by the search box's words then)
            held.append(route.request)
            await release.wait()
        await route.continue_()

    await desk.route(re.compile(r"/admin/kb/entries\?limit=20"), hold_the_first)
    try:
        await sign_in(desk, web, "dana")
        faq, answer = await find_entry(desk, "unsubscribe", "newsletter-unsubscribe")
        await answer.fill("Click Unsubscribe in any newsletter.")
        async with desk.expect_request_finished(lambda r: r in held):
            release.set()
        await desk.wait_for_timeout(300)  # time for the late list to be shown, were it shown
        await expect(faq.get_by_role("article")).to_have_count(1)
        await expect(answer).to_have_value("Click Unsubscribe in any newsletter.")
    finally:
        await desk.close()


async def test_an_operator_imports_and_downloads_faq_files_from_the_desk(
    web: Server, browser: Browser, tmp_path: Path
) -> None:
    """A file with a bad line is refused, naming the line, and changes nothing; a good one is
    checked first (nothing changes yet), then imported, and customers get its answers at once.
    Replacing the whole FAQ is only checked here. The FAQ then downloads with the new entries."""
    bad = tmp_path / "bad.csv"
    bad.write_text("question,answer\nDo you sell skis?,Yes.\nDo you sell sleds?,\n", "utf-8")
    good = tmp_path / "new-gear.csv"
    good.write_text(
        "question,answer,alt_questions\n"
        'Do you sell camping stoves?,"Yes, gas and alcohol stoves from 25 EUR.",camping stove\n'
        "Do you repair tents?,Yes: send it to us and we quote within 3 days.,tent repair\n",
        "utf-8",
    )
    desk = await browser.new_page()
    try:
        await sign_in(desk, web, "dave")
        files = desk.get_by_role("region", name="FAQ files")
        status = files.get_by_role("status")

        await files.get_by_label("FAQ file").set_input_files(str(bad))
        await files.get_by_role("button", name="Check the file").click()
        await expect(status).to_contain_text("bad.csv: upload:3: field 'answer'")
        await expect(files.get_by_role("button", name="Import it")).to_be_hidden()

        await files.get_by_label("FAQ file").set_input_files(str(good))
        await files.get_by_label("How to import").select_option("replace")
        await files.get_by_role("button", name="Check the file").click()
        # Replacing would remove every entry of the sample FAQ:
        replacing = re.compile(r"2 new, 0 changed, 0 unchanged, [1-9]\d* removed")
        await expect(status).to_contain_text(replacing)
        await files.get_by_label("How to import").select_option("merge")  # not replace after all
        await expect(files.get_by_role("button", name="Import it")).to_be_hidden()
        await files.get_by_role("button", name="Check the file").click()
        await expect(status).to_contain_text(
            "new-gear.csv is valid: 2 new, 0 changed, 0 unchanged, 0 removed. Nothing has changed"
        )
        before = await ask(web, "Do you sell camping stoves?")
        assert "25 EUR" not in before["reply"]  # only checked so far
        await files.get_by_role("button", name="Import it").click()
        await expect(status).to_contain_text("Imported: 2 new, 0 changed, 0 unchanged, 0 removed")
        await desk.screenshot(path=str(ARTIFACTS / "operator-files.png"))

        async with desk.expect_download() as download:
            await files.get_by_role("button", name="CSV").click()
        assert (await download.value).suggested_filename == "faq.csv"
        exported = await asyncio.to_thread(Path(await (await download.value).path()).read_text)
        assert "Do you sell camping stoves?" in exported
        assert "How do I reset my password?" in exported
    finally:
        await desk.close()
    stoves = await ask_until(web, "do you sell camping stoves?", "25 EUR")
    assert stoves["mode"] == "faq"
    assert stoves["reply"] == "Yes, gas and alcohol stoves from 25 EUR."
    still = await ask(web, "how do I reset my password?")  # nothing was replaced
    assert still["mode"] == "faq" and "Forgot password?" in still["reply"]
    # Signed in with the admin token, the name Dave gave says who imported them.
    async with httpx.AsyncClient(base_url=web.url, headers=ADMIN, timeout=30) as admin:
        found = (await admin.get("/admin/kb/entries", params={"contains": "camping"})).json()
    assert [e["by"] for e in found["items"]] == ["dave (admin token)"]


async def test_a_question_sent_before_the_widget_is_ready_waits_for_it(
    web: Server, browser: Browser
) -> None:
    """On a slow connection a customer may type before the widget has its session: the question
    is sent once the session exists, after the greeting, and answered (it used to go out without
    a session and be lost, with no greeting either)."""
    page = await browser.new_page()

    async def slowly(route: Route) -> None:
        await asyncio.sleep(1.5)
        await route.continue_()

    try:
        await page.route("**/api/site", slowly)
        await page.goto(web.url + "/")
        dialog, message = await open_chat(page)
        await send(message, "how do I reset my password?")
        await expect(dialog.locator(".m.bot").first).to_contain_text("Hi!")
        await expect(dialog.locator(".m.user")).to_have_text(["how do I reset my password?"])
        await expect(dialog.locator(".m.bot").nth(1)).to_contain_text("Forgot password?")
    finally:
        await page.close()


async def test_the_widget_fits_a_phone(web: Server, browser: Browser) -> None:
    page = await browser.new_page(viewport={"width": 390, "height": 844})
    try:
        await page.goto(web.url + "/")  # the demo page, with the demo site key
        await open_chat(page)
        box = await page.get_by_role("dialog", name="Chat").bounding_box()
        assert box is not None and box["width"] == 390 and box["height"] == 844
        await expect(page.get_by_role("dialog").locator(".m.bot").first).to_contain_text("Hi!")
        await page.screenshot(path=str(ARTIFACTS / "widget-phone.png"))
    finally:
        await page.close()


async def test_a_page_on_an_origin_that_is_not_allowed_gets_nothing(
    web: Server, browser: Browser
) -> None:
    allowed = register(web, "https://shop.example")
    stranger = ShopSite()
    stranger.html = HOST_PAGE.format(server=web.url, key=allowed)
    page = await browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    try:
        await page.goto(stranger.url + "/")
        await open_chat(page)
        await page.wait_for_timeout(1500)
        assert await page.get_by_role("dialog").locator(".m").count() == 0
        assert any("CORS" in e for e in errors), errors
        async with httpx.AsyncClient(timeout=30) as client:
            headers = {"x-site-key": allowed, "origin": stranger.url}
            r = await client.get(f"{web.url}/api/site", headers=headers)
        assert r.status_code == 403
    finally:
        stranger.close()


async def test_the_widget_says_when_the_team_is_there(web: Server, browser: Browser) -> None:
    """Under its title the widget says whether a person is there to ask for: with an operator's
    desk listing the queue, "Our team is here" (and how soon it usually answers, once known)."""
    async with httpx.AsyncClient(base_url=web.url, timeout=30) as client:
        assert (await client.get("/admin/handoff", headers=ADMIN)).is_success  # a desk is open
        team = (await client.get("/api/team")).json()
    assert team["here"] is True and team["back"] is None
    page = await browser.new_page()
    try:
        await page.goto(web.url + "/")
        chat, _ = await open_chat(page)
        here = re.compile(r"^Our team is here(: usually answers within (a minute|\d+ minutes))?$")
        await expect(chat.get_by_role("status")).to_have_text(here)
    finally:
        await page.close()


def test_the_widget_is_small() -> None:
    size = (Path(__file__).resolve().parent.parent / "adapters/static/widget.js").stat().st_size
    assert size < 30_000
