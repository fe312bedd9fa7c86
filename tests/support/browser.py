"""Debian's Chromium as the browser tests start it."""

import shutil
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from django.db import connection
from playwright.sync_api import expect, sync_playwright

PASSWORD = "pw-browser-1234"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@contextmanager
def chromium():
    """Debian's Chromium, driven by Playwright (never a browser Playwright downloads)."""
    executable = shutil.which("chromium")
    assert executable, "Debian's chromium package is required (scripts/test installs it)"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


def signed_in(browser, base: str, user: str, path: str = "/", width: int = 1440):
    """A new page of `path` in its own context, signed in as user (PASSWORD), with the live websocket open.
    window.loadedOnce is set: it is gone if the page reloads."""
    page = browser.new_context(viewport={"width": width, "height": 900}).new_page()
    page.goto(f"{base}{path}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("body.live")).to_be_attached()
    page.evaluate("window.loadedOnce = true")
    return page


def in_db(fn, *args, **kwargs):
    """Run fn outside Playwright's event loop (the ORM refuses to run in a thread that has one)."""
    def call():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(call).result()
