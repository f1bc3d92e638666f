"""The callbacks section of the /supervisor page in Debian's Chromium
(headless, Playwright): a callback to a busy customer, tried twice, shows
with its final status and both attempts (time, outcome, the agent's name);
the status filter hides and shows it."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from tests.browser_kit import chromium, needs_chromium, new_page, sign_in
from tests.wallboard_kit import PASSWORD, rig

pytestmark = [pytest.mark.timeout(90), pytest.mark.browser]

RETRY_FAST = {"CTI_CALLBACKS_RETRY_BACKOFF_SECONDS": "1,1", "CTI_CALLBACKS_MAX_ATTEMPTS": "2",
              "CTI_CALLBACKS_POLL_SECONDS": "0.2"}


@needs_chromium
async def test_the_supervisor_page_shows_a_callback_and_its_attempts(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    # 1005 Frank answers after 1 s; the customer 0699999999 is always busy
    async with rig(tmp_path, {"1005": {"support": 5}}, extra_env=RETRY_FAST) as r, \
            chromium() as browser:
        errors: list[str] = []
        page = await new_page(browser, errors)
        expect = playwright_api.expect
        await sign_in(page, expect, f"{r.base}/supervisor", "sup", PASSWORD)

        async with aiohttp.ClientSession() as http, http.post(
                f"{r.base}/api/v1/callbacks",
                json={"number": "06 99 99 99 99", "name": "Bea Busy"}) as response:
            assert response.status == 202, await response.text()
            callback_id = (await response.json())["id"]

        row = page.locator(f'#callbacks tr[data-callback="{callback_id}"]')
        await expect(row).to_have_count(1, timeout=10_000)
        await expect(row.locator(".cb-status")).to_have_text("failed (busy)",
                                                             timeout=30_000)
        await expect(row).to_contain_text("Bea Busy +33699999999")
        attempts = row.locator("ol.attempts li")
        await expect(attempts).to_have_count(2)
        for index in range(2):
            item = attempts.nth(index)
            await expect(item).to_have_attribute("data-outcome", "busy")
            await expect(item).to_contain_text("busy · Agent 1005 (agent-first)")

        await page.select_option("#cb-status", label="pending")
        await expect(row).to_have_count(0, timeout=10_000)
        await page.select_option("#cb-status", label="finished")
        await expect(row).to_have_count(1, timeout=10_000)
        await page.select_option("#cb-service", "sales")
        await expect(row).to_have_count(0, timeout=10_000)
        assert errors == []
