"""The chat page at / in a real browser (Debian's chromium, driven by Playwright)."""

import shutil
from pathlib import Path

from playwright.async_api import async_playwright, expect

from tests.server import Server

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
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


async def test_a_customer_asks_in_the_chat_page_and_sees_history_after_reload(
    server: Server,
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as p:
        browser = await p.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        page = await browser.new_page()
        await page.goto(server.url + "/")
        await page.get_by_label("Your question").fill("how do I reset my password?")
        await page.get_by_role("button", name="Send").click()
        answer = page.locator(".msg.assistant").first
        await expect(answer).to_contain_text('Click "Sign in", then "Forgot password?"')
        await expect(answer.locator(".meta")).to_contain_text("faq · How do I reset my password?")
        await page.screenshot(path=str(ARTIFACTS / "chat-page.png"))

        await page.reload()  # the page keeps its session id; the history comes back from Redis
        await expect(page.locator(".msg.user").first).to_have_text("how do I reset my password?")
        await expect(page.locator(".msg.assistant").first).to_contain_text("Forgot password?")

        await page.get_by_label("Your question").fill("what is the capital of France?")
        await page.get_by_role("button", name="Send").click()
        await expect(page.locator(".msg.assistant").nth(1)).to_contain_text("don't know")
        await browser.close()
