"""What the browser tests share: Debian's Chromium launched headless by
Playwright (never a browser download), a page that collects its
JavaScript errors, the sign-in form of /agent and /supervisor, and
customers loaded with `cti customers import` as an operator would."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.stack import ROOT

CHROMIUM = "/usr/bin/chromium"
needs_chromium = pytest.mark.skipif(shutil.which(CHROMIUM) is None,
                                    reason="Debian's chromium is not installed")


@asynccontextmanager
async def chromium() -> AsyncIterator[Any]:
    """Playwright driving Debian's Chromium: headless, --no-sandbox."""
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox"])
        try:
            yield browser
        finally:
            await browser.close()


async def new_page(opener: Any, errors: list[str]) -> Any:
    """A page of `opener` (a browser or a context) whose uncaught
    JavaScript errors land in `errors`."""
    page = await opener.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


async def sign_in(page: Any, expect: Any, url: str, username: str, password: str) -> None:
    """Open `url` (/agent or /supervisor), sign in, wait for the socket."""
    await page.goto(url)
    await page.fill("#username", username)
    await page.fill("#password", password)
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#link")).to_have_text("online")


def import_customers(redis_url: str, tmp: Path, rows: list[dict[str, object]]) -> None:
    """`cti customers import` of JSON lines, as an operator loads them."""
    data = tmp / "customers.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTI_")}
    env.update({"PYTHONPATH": ROOT, "CTI_REDIS_URL": redis_url})
    done = subprocess.run([sys.executable, "-m", "cti", "customers", "import", str(data)],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
