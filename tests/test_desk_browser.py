"""The /agent page in Debian's Chromium (headless, Playwright): the agent
signs in, goes ready, a simulated VIP call rings, and the pop shows the
customer's name, the VIP badge and the last contact while it rings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.desk_kit import PASSWORD, VIP_NUMBER, rig

pytestmark = [pytest.mark.timeout(60), pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"


@pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason="Debian's chromium is not installed")
async def test_agent_signs_in_goes_ready_and_sees_the_vip_pop_while_it_rings(
        tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with rig(tmp_path, [("1007", "Heidi")]) as r, \
            playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox"])
        try:
            page = await browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            await page.goto(f"{r.base}/agent")
            await page.fill("#username", "1007")
            await page.fill("#password", PASSWORD)
            await page.click("#login-form button[type=submit]")
            expect = playwright_api.expect
            await expect(page.locator("#link")).to_have_text("online")
            await expect(page.locator("#state")).to_have_text("logged out")
            await page.click("#ready")
            await expect(page.locator("#state")).to_have_text("available")

            await r.call(VIP_NUMBER, name="Alice")
            await expect(page.locator("#pop-name")).to_have_text("Alice Dupont", timeout=10_000)
            await expect(page.locator("#vip-badge")).to_be_visible()
            await expect(page.locator("#history tbody tr").first).to_contain_text("Carol")
            # Shown while the simulated phone still rings (Heidi answers after 2 s).
            assert await page.locator("#progress").text_content() == "ringing"
            await expect(page.locator("#progress")).to_have_text("connected", timeout=10_000)
            await expect(page.locator("#disposition-form")).to_be_visible()
            await expect(page.locator("#progress")).to_have_text("ended", timeout=15_000)
            await page.select_option("#disposition", "follow-up")
            await page.fill("#notes", "call back Monday")
            await page.click("#disposition-form button[type=submit]")
            await expect(page.locator("#disposition-saved")).to_have_text("Saved.")
            assert errors == []
        finally:
            await browser.close()
        history = await r.server.customers.history("c-vip")
        assert history[0].disposition == "follow-up"
