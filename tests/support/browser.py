"""Debian's Chromium as the browser tests start it."""

PASSWORD = "pw-browser-1234"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
