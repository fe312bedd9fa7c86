"""Debian's Chromium as the browser tests start it."""

import shutil
from contextlib import contextmanager

from playwright.sync_api import sync_playwright

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
