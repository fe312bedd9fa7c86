"""End to end in Debian's Chromium: an open dashboard shows a disk level pending, counting up, and drops it."""


import pytest
from playwright.sync_api import expect

from monitoring.models import WatchedFilesystem
from tests.support import tmpfs as tmpfs_support
from tests.support.browser import PASSWORD, chromium
from tests.support.processes import manage
from tests.support.tmpfs import empty, fill_to

pytestmark = [pytest.mark.browser, pytest.mark.privileged]

volume = tmpfs_support.volume  # a real tmpfs, as a fixture of this module


@pytest.fixture
def watched(django_user_model, server, volume):
    # Made before the browser starts: Playwright's event loop makes the ORM refuse to run.
    django_user_model.objects.create_user("ops", password=PASSWORD)
    WatchedFilesystem.objects.all().delete()
    return WatchedFilesystem.objects.create(path=str(volume), label="vol", orange_for_seconds=600)


@pytest.fixture
def page(watched, server):
    with chromium() as browser:
        page = browser.new_context().new_page()
        page.goto(f"{server}/")
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator("body.live")).to_be_attached()  # the websocket is open
        page.evaluate("window.loadedOnce = true")  # gone if the page reloads
        yield page
        browser.close()


def test_an_open_dashboard_counts_a_pending_level_and_drops_it(watched, volume, page):
    pending = page.locator(f'tr[data-fs="{watched.pk}"] [data-pending]')
    expect(pending).to_be_hidden()

    fill_to(volume, 93)
    manage("check_disk")  # the check publishes the state: orange waits for its 600 s
    expect(pending).to_be_visible(timeout=30_000)
    expect(pending).to_contain_text("orange pending for", timeout=30_000)
    expect(pending).to_contain_text("of 600 s")
    first = pending.text_content()
    expect(pending).not_to_have_text(first, timeout=30_000)  # it counts up between checks

    empty(volume)
    manage("check_disk")
    expect(pending).to_be_hidden(timeout=30_000)
    assert page.evaluate("window.loadedOnce") is True  # all of it without a reload
