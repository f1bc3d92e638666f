"""Two agents' desks in Debian's Chromium (headless, Playwright, two browser
contexts) against the whole stack as processes: `cti serve` + `cti sim` +
`redis-server`, customers loaded by `cti customers import`. A VIP call
rings Grace, her simulated phone answers, she writes notes and transfers
the caller to Frank by name on the page; Frank's page pops the customer
with Grace's notes, and he hangs up from it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cti.auth import hash_password
from tests.browser_kit import chromium, import_customers, needs_chromium, new_page, sign_in
from tests.stack import center_file, stack

pytestmark = [pytest.mark.timeout(120), pytest.mark.browser, pytest.mark.integration]

PASSWORD = "correct horse"
VIP_NUMBER = "+33612345678"


async def sign_in_agent(page: Any, expect: Any, base: str, agent_id: str) -> None:
    await sign_in(page, expect, f"{base}/agent", agent_id, PASSWORD)
    await expect(page.locator("#state")).to_have_text("logged out")


@needs_chromium
async def test_a_transfer_to_a_colleague_shows_the_first_agents_notes_on_the_second_desk(
        tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    expect = playwright_api.expect
    hashed = hash_password(PASSWORD)
    # Sim phones: Grace (1006) rings 2 s and talks 120 s, Frank (1005) rings 1 s.
    center = center_file(tmp_path, [
        {"id": "1006", "name": "Grace", "skills": {"support": 5}, "login_at_start": False,
         "password_hash": hashed},
        {"id": "1005", "name": "Frank", "skills": {"support": 5}, "login_at_start": False,
         "password_hash": hashed},
    ])
    async with stack(tmp_path, center) as s, chromium() as browser:
        await asyncio.to_thread(import_customers, s.redis_url, tmp_path, [
            {"id": "c-vip", "name": "Alice Dupont", "phones": [VIP_NUMBER], "tier": "vip",
             "account": "123456"}])
        base = f"http://127.0.0.1:{s.http_port}"
        errors: list[str] = []
        grace, frank = [await new_page(await browser.new_context(), errors)
                        for _ in range(2)]
        await sign_in_agent(grace, expect, base, "1006")
        await sign_in_agent(frank, expect, base, "1005")
        await grace.click("#ready")
        await expect(grace.locator("#state")).to_have_text("available")

        await s.call(number=VIP_NUMBER, name="Alice")
        await expect(grace.locator("#pop-name")).to_have_text("Alice Dupont",
                                                              timeout=10_000)
        await expect(grace.locator("#vip-badge")).to_be_visible()
        await expect(grace.locator("#progress")).to_have_text("connected", timeout=10_000)
        # Frank is free only now: the call was Grace's.
        await frank.click("#ready")
        await expect(frank.locator("#state")).to_have_text("available")
        assert await frank.locator("#pop").is_hidden()

        notes = "refund of the March invoice agreed; identity checked"
        await grace.fill("#transfer-notes", notes)
        await grace.select_option("#transfer-to", "agent:1005")
        await grace.click("#transfer-form button[type=submit]")
        await expect(grace.locator("#progress")).to_have_text("ended", timeout=10_000)
        await expect(grace.locator("#state")).to_have_text("wrap up")

        await expect(frank.locator("#pop-name")).to_have_text("Alice Dupont",
                                                              timeout=10_000)
        await expect(frank.locator("#vip-badge")).to_be_visible()
        await expect(frank.locator("#previous-notes li")).to_have_text(
            f"Grace (support): {notes}")
        await expect(frank.locator("#pop-rule")).to_have_text("transferred by agent 1006")
        await expect(frank.locator("#progress")).to_have_text("connected", timeout=10_000)

        await frank.click("#hangup")
        await expect(frank.locator("#progress")).to_have_text("ended", timeout=10_000)
        assert errors == []
        (transferred,) = await s.log.wait("routing.transferred", to_agent="1005")
        assert transferred["agent_id"] == "1006" and transferred["vip"] is True
        (ended,) = await s.log.wait("call.ended")
        assert ended["agent_id"] == "Local/1005@sim-agent"
        assert ended["call_id"] == transferred["call_id"]
