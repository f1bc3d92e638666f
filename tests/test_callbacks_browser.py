"""The callback widget in Debian's Chromium (headless, Playwright): a shop
page on another origin embeds /widget/callback.js with one script tag; the
visitor asks to be called back and sees the expected time, the simulated
customer answers and the widget shows the call done. A second page, with
nobody logged in, gets slots instead of ASAP."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from aiohttp import web

from tests.browser_kit import chromium, needs_chromium, new_page
from tests.callback_floor import floor
from tests.servers import free_port

pytestmark = [pytest.mark.timeout(90), pytest.mark.browser]

SHOP = """<!doctype html><html lang="en"><head><title>Shop</title></head><body>
<h1>Our shop</h1><div id="call-me"></div>
<script src="{cti}/widget/callback.js" data-topic="support" data-target="#call-me"></script>
</body></html>"""


@asynccontextmanager
async def shop(cti_base: str, port: int) -> AsyncIterator[str]:
    """The embedding site: its own aiohttp app on its own loopback port."""
    app = web.Application()

    async def page(request: web.Request) -> web.Response:
        return web.Response(text=SHOP.format(cti=cti_base), content_type="text/html")

    app.router.add_get("/", page)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@needs_chromium
async def test_a_page_on_another_origin_requests_a_callback_and_sees_the_time(
        tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    expect = playwright_api.expect
    shop_port = free_port()
    origin = f"http://127.0.0.1:{shop_port}"
    agents = [{"id": "1001", "skills": {"support": 5}}]
    async with floor(tmp_path, agents, env={"CTI_CALLBACKS_ALLOWED_ORIGINS": origin}) as f, \
            shop(f.base, shop_port) as shop_url, chromium() as browser:
        errors: list[str] = []
        page = await new_page(browser, errors)
        await page.goto(shop_url)
        number = page.get_by_label("Your phone number")
        await number.fill("not a number")
        await page.get_by_role("button", name="Call me back").click()
        await expect(page.get_by_role("status")).to_contain_text("valid phone number")
        await expect(number).to_have_attribute("aria-invalid", "true")
        await number.fill("06 11 22 33 44")
        await page.get_by_label("Your name (optional)").fill("Zoë")
        await page.keyboard.press("Enter")
        status = page.get_by_role("status")
        await expect(page.locator(".cti-cb-expected")).to_have_text(
            re.compile(r"We will call you back around \d{1,2}:\d\d( [AP]M)?\."))
        box = page.locator(".cti-cb")
        await expect(box).to_have_attribute("data-status", "completed", timeout=40_000)
        await expect(status).to_contain_text("the call is done")
        assert errors == []


@needs_chromium
async def test_an_overloaded_center_offers_slots_in_the_widget(tmp_path: Path) -> None:
    playwright_api = pytest.importorskip("playwright.async_api")
    expect = playwright_api.expect
    shop_port = free_port()
    origin = f"http://127.0.0.1:{shop_port}"
    agents = [{"id": "1001", "skills": {"support": 5}, "login_at_start": False}]
    async with floor(tmp_path, agents, env={"CTI_CALLBACKS_ALLOWED_ORIGINS": origin}) as f, \
            shop(f.base, shop_port) as shop_url, chromium() as browser:
        page = await new_page(browser, [])
        await page.goto(shop_url)
        when = page.get_by_label("When")
        # no ASAP choice: the first option is a slot
        await expect(when.locator("option").first).not_to_have_attribute("value", "asap")
        await page.get_by_label("Your phone number").fill("0611223344")
        await page.get_by_role("button", name="Call me back").click()
        await expect(page.locator(".cti-cb-expected")).to_have_text(
            re.compile(r"We will call you back at \d{1,2}:\d\d( [AP]M)?\."))
        assert await f.redis.zcard("cti:cb:due") == 1
