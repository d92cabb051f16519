"""A real browser for the console: Debian's chromium, driven by Playwright (no browser download).

`make test` installs chromium with apt where it can; elsewhere these tests skip with a message.
Every page's screenshot is written to tests/artifacts/ (kept out of git) for people to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
async def browser():
    if CHROMIUM is None:
        pytest.skip("chromium is not installed (apt-get install chromium): the console's browser tests are skipped")
    async_api = pytest.importorskip("playwright.async_api",
                                    reason="playwright is not installed (pip install playwright)")
    async with async_api.async_playwright() as pw:
        launched = await pw.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        await launched.close()


@pytest.fixture
async def page(browser):
    """A fresh tab; the test fails on any script error or console error (a CSP refusal is one)."""
    context = await browser.new_context(viewport={"width": 1360, "height": 860}, device_scale_factor=1)
    tab = await context.new_page()
    tab.set_default_timeout(20_000)
    problems: list[str] = []
    tab.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    # answers the tests provoke on purpose (a wrong key: 401, a refused setting: 400) are logged by the browser
    expected = ("status of 400 (Bad Request)", "status of 401 (Unauthorized)")
    tab.on("console", lambda msg: problems.append(f"console {msg.type}: {msg.text}")
           if msg.type == "error" and not msg.text.endswith(expected) else None)
    tab.problems = problems  # type: ignore[attr-defined]
    yield tab
    await context.close()
    assert problems == []


async def shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
