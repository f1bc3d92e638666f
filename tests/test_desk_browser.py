"""The /agent page in Debian's Chromium (headless, Playwright) against the
real processes: `cti serve` + `cti sim` + `redis-server` (tests/stack.py),
the customer loaded with `cti customers import`. The agent signs in, goes
ready, a simulated VIP call rings, and the pop shows the customer's name,
the VIP badge and the last contact while it rings; the disposition at
wrap-up lands in the customer's history."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from cti.auth import hash_password
from cti.customers.models import Contact
from cti.customers.store import CustomerStore
from tests.browser_kit import chromium, import_customers, needs_chromium, new_page, sign_in
from tests.desk_kit import PASSWORD, VIP_NUMBER
from tests.stack import center_file, stack

pytestmark = [pytest.mark.timeout(90), pytest.mark.browser, pytest.mark.integration]



async def desk_stack_customers(redis_url: str, tmp: Path) -> CustomerStore:
    """Alice (VIP, account 123456) with one earlier call, handled by Carol."""
    import_customers(redis_url, tmp, [{"id": "c-vip", "name": "Alice Dupont", "tier": "vip",
                                       "phones": [VIP_NUMBER], "account": "123456"}])
    store = CustomerStore(aioredis.Redis.from_url(redis_url, decode_responses=True),
                          region="FR")
    await store.add_contact("c-vip", Contact(
        at=time.time() - 86_400, channel="voice", direction="inbound", service="support",
        agent_id="1002", agent_name="Carol", duration_s=120, outcome="handled",
        disposition="resolved", notes="asked about her invoice"))
    return store


def desk_center(tmp: Path, agents: list[tuple[str, str]]) -> Path:
    """Agents with passwords who start logged out; `support` (wrap-up 30 s)
    escalates to `support-l2`."""
    digest = hash_password(PASSWORD)
    return center_file(
        tmp, [{"id": agent_id, "name": name, "password_hash": digest,
               "login_at_start": False, "skills": {"support": 9}}
              for agent_id, name in agents],
        support={"skills": {"support": 1}, "numbers": ["0140000001"],
                 "wrap_up_seconds": 30, "ring_timeout_seconds": 10,
                 "escalation": "support-l2"},
        **{"support-l2": {"skills": {"level2": 1}, "wrap_up_seconds": 30}})


@needs_chromium
async def test_agent_signs_in_goes_ready_and_sees_the_vip_pop_while_it_rings(
        tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    async with stack(tmp_path, desk_center(tmp_path, [("1007", "Heidi")])) as s, \
            chromium() as browser:
        customers = await desk_stack_customers(s.redis_url, tmp_path)
        errors: list[str] = []
        page = await new_page(browser, errors)
        expect = playwright_api.expect
        await sign_in(page, expect, f"http://127.0.0.1:{s.http_port}/agent", "1007",
                      PASSWORD)
        await expect(page.locator("#state")).to_have_text("logged out")
        await page.click("#ready")
        await expect(page.locator("#state")).to_have_text("available")

        await s.call(number=VIP_NUMBER, name="Alice")
        await expect(page.locator("#pop-name")).to_have_text("Alice Dupont", timeout=15_000)
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
        history = await customers.history("c-vip")
        assert history[0].disposition == "follow-up"
        assert (history[0].agent_id, history[0].notes) == ("1007", "call back Monday")
        await customers.redis.aclose()
