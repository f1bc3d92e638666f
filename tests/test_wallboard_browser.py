"""The /supervisor page in Debian's Chromium (headless, Playwright): the
supervisor signs in and sees a sales call waiting; giving the only agent
the sales skill on the page routes the call to that agent and the service
level appears; listen on the agent's call originates ChanSpy on the sim."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.browser_kit import chromium, needs_chromium, new_page, sign_in
from tests.wallboard_kit import PASSWORD, rig

pytestmark = [pytest.mark.timeout(90), pytest.mark.browser]



@needs_chromium
async def test_wallboard_shows_waiting_call_skill_change_routes_it_and_listen_spies(
        tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    # 1005 Frank answers after 1 s and talks 120 s; he starts with support only
    async with rig(tmp_path, {"1005": {"support": 5}}) as r, \
            chromium() as browser:
        errors: list[str] = []
        page = await new_page(browser, errors)
        expect = playwright_api.expect
        await sign_in(page, expect, f"{r.base}/supervisor", "sup", PASSWORD)

        await r.call("sales", name="Alice")
        row = page.locator("#waiting tbody tr")
        await expect(row).to_have_count(1, timeout=10_000)
        await expect(row.first).to_contain_text("Alice")
        await expect(row.first).to_contain_text("sales")
        sales = page.locator('#services tr[data-service="sales"]')
        await expect(sales.locator(".waiting")).to_have_text("1")
        await expect(sales.locator(".sl")).to_have_text("—")
        # Frank lacks sales: the call keeps waiting until he gets it
        assert r.server.switchboard.agents["1005"].state.value == "available"

        agent = page.locator('#agents tr[data-agent="1005"]')
        await agent.locator("input.skills").fill("support:5 sales:6")
        await agent.locator("button.save-skills").click()
        await expect(page.locator("#action-result")).to_have_text("done")
        await expect(row).to_have_count(0, timeout=10_000)
        await expect(agent.locator(".state")).to_have_text("on call", timeout=10_000)
        await expect(sales.locator(".sl")).to_have_text("100%")
        assert dict(r.server.switchboard.agents["1005"].skills) == {"support": 5, "sales": 6}

        since = len(r.ami.received)
        await agent.locator("button.listen").click()
        await expect(page.locator("#action-result")).to_have_text("done")
        start = await r.ami.event("ChanSpyStart", since=since)
        assert (start.get("SpyeeChannel") or "").startswith("Local/1005@sim-agent")
        assert (start.get("SpyerChannel") or "").startswith("Local/2001@sim-agent")
        assert errors == []
