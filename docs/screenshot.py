"""Take the README screenshot of a running glmadmin: python docs/screenshot.py URL USER PASSWORD OUT.png"""

import shutil
import sys

from playwright.sync_api import sync_playwright

url, user, password, out = sys.argv[1:5]
with sync_playwright() as pw:
    browser = pw.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox", "--disable-gpu"])
    page = browser.new_page(viewport={"width": 1280, "height": 820})
    page.goto(url)
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_selector("body.live")
    page.screenshot(path=out)
    browser.close()
