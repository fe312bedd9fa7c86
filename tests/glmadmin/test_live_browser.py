"""End to end in Debian's Chromium: alerts appear and go in open pages without reload."""


import pytest
from playwright.sync_api import expect

from tests.support.browser import PASSWORD, chromium
from tests.support.processes import manage

pytestmark = [pytest.mark.browser]



@pytest.fixture
def ops(django_user_model):
    # Made before the browser starts: Playwright's event loop makes the ORM refuse to run.
    return django_user_model.objects.create_user("ops", password=PASSWORD)


@pytest.fixture
def browser(ops, server):
    with chromium() as browser:
        yield browser


def logged_in_page(browser, base):
    page = browser.new_context().new_page()
    page.goto(f"{base}/")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    expect(page.locator("h2", has_text="Filesystems")).to_be_visible()
    expect(page.locator("body.live")).to_be_attached()  # the websocket is open
    page.evaluate("window.loadedOnce = true")  # gone if the page reloads
    return page


def test_orange_banner_in_two_browsers_without_reload(server, browser):
    pages = [logged_in_page(browser, server) for _ in range(2)]

    manage("test_alert", "--level", "orange")
    for page in pages:
        banner = page.locator(".banner-orange")
        expect(banner).to_be_visible()
        expect(banner).to_contain_text("Simulated disk alert")
        assert page.evaluate("window.loadedOnce") is True

    manage("test_alert", "--clear")
    for page in pages:
        expect(page.locator(".banner-orange")).to_have_count(0)
        assert page.evaluate("window.loadedOnce") is True


def test_red_banner_and_dismissable_yellow_toast(server, browser):
    page = logged_in_page(browser, server)

    manage("test_alert", "--level", "yellow")
    toast = page.locator(".toast")
    expect(toast).to_contain_text("Yellow (test)")
    toast.locator(".toast-close").click()
    expect(page.locator(".toast")).to_have_count(0)
    page.reload()  # the server draws the toast again; the page remembers it was dismissed
    expect(page.locator("body.live")).to_be_attached()
    expect(page.locator(".toast")).to_have_count(0)

    manage("test_alert", "--level", "red")
    expect(page.locator(".banner-red")).to_contain_text("New inference requests are paused")
    expect(page.locator(".pill-red")).to_be_visible()
    manage("test_alert", "--clear")
    expect(page.locator(".banner-red")).to_have_count(0)
