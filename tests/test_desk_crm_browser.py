"""The /agent page in Debian's Chromium (headless, Playwright) with a slow
CRM on loopback: the pop shows at once with the CRM "looking up...", then
the CRM's record appears in the same card when its answer comes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_kit import chromium, needs_chromium, new_page, sign_in
from tests.crm_peer import CrmPeer
from tests.desk_kit import PASSWORD, VIP_NUMBER, rig

pytestmark = [pytest.mark.timeout(60), pytest.mark.browser]



@needs_chromium
async def test_the_pop_shows_at_once_and_the_crm_record_fills_in_when_it_answers(
        tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    crm = await CrmPeer().start()
    crm.records[VIP_NUMBER] = {"name": "A. Dupont (CRM)", "tier": "gold",
                               "notes": "Prefers email", "segment": {"churn_risk": "low"},
                               "link": "https://crm.example/c/42",
                               "recent_contacts": [{"at": 1714557600, "channel": "email",
                                                    "summary": "invoice question"}]}
    crm.mode = "hold"
    env = {"CTI_CRM_URL_TEMPLATE": crm.template, "CTI_CRM_TIMEOUT_SECONDS": "10",
           "CTI_CRM_POP_WAIT_SECONDS": "0.1"}
    try:
        async with rig(tmp_path, [("1005", "Frank")], extra_env=env) as r, \
                chromium() as browser:
            errors: list[str] = []
            page = await new_page(browser, errors)
            expect = playwright_api.expect
            await sign_in(page, expect, f"{r.base}/agent", "1005", PASSWORD)
            await page.click("#ready")
            await expect(page.locator("#state")).to_have_text("available")

            await r.call(VIP_NUMBER, name="Alice")
            await expect(page.locator("#pop-name")).to_have_text("Alice Dupont",
                                                                 timeout=10_000)
            await expect(page.locator("#crm-status")).to_have_text("looking up...")
            await expect(page.locator("#crm-facts")).to_be_hidden()
            # Marks the card: an update redraws it, it does not replace it.
            await page.evaluate("document.getElementById('pop').dataset.seen = 'yes'")
            crm.release.set()
            await expect(page.locator("#crm-name")).to_have_text("A. Dupont (CRM)")
            await expect(page.locator("#crm-facts")).to_be_visible()
            await expect(page.locator("#crm-status")).to_have_text("")
            assert await page.locator("#crm-tier").text_content() == "gold"
            assert await page.locator("#crm-segment").text_content() == "churn_risk: low"
            assert await page.locator("#crm-link").get_attribute("href") == (
                "https://crm.example/c/42")
            await expect(page.locator("#crm-recent li")).to_contain_text("invoice question")
            # The directory's customer is still who the pop is about.
            assert await page.locator("#pop-name").text_content() == "Alice Dupont"
            assert await page.locator("#pop-notes").text_content() == "Prefers email"
            assert await page.evaluate("document.getElementById('pop').dataset.seen") == (
                "yes")
            assert errors == []
    finally:
        await crm.stop()
