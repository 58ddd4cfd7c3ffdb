"""Headless Chromium for tests, through Playwright's async API.

Playwright drives Debian's Chromium at ``/usr/bin/chromium`` (``scripts/test`` installs it,
``ensure_browser`` in scripts/lib.sh) and never downloads a browser of its own. A browser
test never skips: without Chromium it fails and says how to get it.

Use the ``browser_page`` fixture (tests/conftest.py loads this module as a plugin), or
``open_page()`` where a test needs more than one page or another viewport::

    async def test_console(browser_page: BrowserPage) -> None:
        await browser_page.page.goto(f"{base}/ops/")
        ...
        browser_page.assert_no_errors()

``errors`` collects what a person would see in the developer tools: console errors
(a refused Content-Security-Policy, a failed asset) and uncaught exceptions.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.async_api import ConsoleMessage, Error, Page, async_playwright

CHROMIUM = Path(os.environ.get("LIENTHONG_CHROMIUM", "/usr/bin/chromium"))
DESKTOP = (1280, 800)
STEP_TIMEOUT_MS = 10_000  # every locator wait and navigation, so a hang is a failure


@dataclass
class BrowserPage:
    page: Page
    errors: list[str] = field(default_factory=list)

    def assert_no_errors(self) -> None:
        assert not self.errors, "the page reported errors:\n" + "\n".join(self.errors)


def _chromium() -> str:
    if not CHROMIUM.is_file():
        pytest.fail(
            f"no Chromium at {CHROMIUM}: run the tests with scripts/test, which installs "
            "Debian's chromium (or: apt-get install -y --no-install-recommends chromium)",
            pytrace=False,
        )
    return str(CHROMIUM)


@asynccontextmanager
async def open_page(
    *,
    viewport: tuple[int, int] = DESKTOP,
    timezone: str = "Asia/Ho_Chi_Minh",
    locale: str = "vi-VN",
) -> AsyncIterator[BrowserPage]:
    """A fresh headless browser and one page in it; closed on the way out."""
    executable = _chromium()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            context = await browser.new_context(
                viewport={"width": viewport[0], "height": viewport[1]},
                timezone_id=timezone,
                locale=locale,
            )
            page = await context.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            opened = BrowserPage(page)

            def on_console(message: ConsoleMessage) -> None:
                if message.type == "error":
                    where = message.location.get("url", "")
                    opened.errors.append(f"console: {message.text} ({where})")

            def on_page_error(error: Error) -> None:
                opened.errors.append(f"uncaught: {error.message}")

            page.on("console", on_console)
            page.on("pageerror", on_page_error)
            yield opened
        finally:
            await browser.close()


@pytest.fixture
async def browser_page() -> AsyncIterator[BrowserPage]:
    """A page of headless Chromium at 1280x800, Vietnamese locale, Asia/Ho_Chi_Minh time."""
    async with open_page() as opened:
        yield opened
