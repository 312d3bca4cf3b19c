"""The chat page at / in a real browser (Debian's chromium, driven by Playwright)."""

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import async_playwright, expect

from tests.server import Server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
TOKEN = "page-test-token"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium() -> str:
    path = shutil.which("chromium")
    assert path, (
        "No browser: install Debian's chromium (`apt-get install chromium`); `make test` does "
        "this itself when run as root."
    )
    return path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    running = Server(
        tmp_path_factory.mktemp("page-data"), extra_env={"ANSWERDESK_ADMIN_TOKEN": TOKEN}
    ).start()
    yield running
    running.stop()


async def test_a_customer_asks_in_the_chat_page_and_sees_history_after_reload(
    site: Server,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        await page.goto(site.url + "/")
        question = page.get_by_label("Your question")
        await question.fill("how do I reset my password?")
        await page.get_by_role("button", name="Send").click()
        answer = page.locator(".msg.assistant").first
        await expect(answer).to_contain_text('Click "Sign in", then "Forgot password?"')
        await expect(answer.locator(".meta")).to_contain_text("faq · How do I reset my password?")
        await page.screenshot(path=str(ARTIFACTS / "chat-page.png"))

        await page.reload()  # the page keeps its session id; the history comes back from Redis
        await expect(page.locator(".msg.user").first).to_have_text("how do I reset my password?")
        await expect(page.locator(".msg.assistant").first).to_contain_text("Forgot password?")

        await question.fill("what is the capital of France?")
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".msg.assistant").nth(1)).to_contain_text("don't know")

        # Asking for a person: an operator's message appears on the page without a reload.
        await question.fill("I want to talk to a human")
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".msg.assistant").nth(2)).to_contain_text("you are next")
        session = await page.evaluate("localStorage.getItem('answerdesk-session')")
        auth = {"authorization": f"Bearer {TOKEN}"}
        async with httpx.AsyncClient(base_url=site.url, headers=auth, timeout=30) as operator_api:
            for path, body in [
                ("take", {"operator": "alice"}),
                ("messages", {"operator": "alice", "text": "Hi, Alice here. How can I help?"}),
            ]:
                r = await operator_api.post(f"/admin/handoff/{session}/{path}", json=body)
                assert r.status_code == 200, r.text
        operator = page.locator(".msg.assistant").nth(3)
        await expect(operator).to_contain_text("Alice here", timeout=10_000)
        await expect(operator.locator(".meta")).to_have_text("operator · alice")
        await page.screenshot(path=str(ARTIFACTS / "chat-page-operator.png"))
        await browser.close()
