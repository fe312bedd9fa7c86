"""End to end in Debian's Chromium: the open dashboard never disagrees with itself nor with the database.

A real tmpfs is filled through yellow, orange and red and emptied again, each time checked by the real disk
check (statvfs). After each step every card that shows the thing (the overview, the banners, the status bar,
the detail cards) must say what the database says, without a reload. On the way: the page fits a 360 px phone.
A real engine's restart under an open dashboard is in tests/inference/engines/test_pool.py (its engine).
"""

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from playwright.sync_api import expect

from alerts import admission
from alerts.incidents import acknowledge
from alerts.models import Incident
from glmadmin import live
from inference.models import Engine
from inference.models import EngineState as S
from monitoring.disk_check import check_all
from monitoring.models import WatchedFilesystem
from tests.support import tmpfs as tmpfs_support
from tests.support.browser import PASSWORD, chromium, in_db, signed_in
from tests.support.tmpfs import empty, fill_to

pytestmark = [pytest.mark.browser, pytest.mark.privileged]

volume = tmpfs_support.volume  # a real tmpfs, as a fixture of this module
NO_SIDEWAYS_SCROLL = "() => [document.documentElement.scrollWidth, window.innerWidth]"
# For the failure message: the outermost elements whose right edge is past the screen's.
STICKING_OUT = """() => [...document.querySelectorAll("body *")].filter(el => {
  const out = e => e.getBoundingClientRect().right > window.innerWidth + 0.5;
  return out(el) && !(el.parentElement && out(el.parentElement));
}).slice(0, 8).map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") + "." + el.className)"""


@pytest.fixture
def setup(django_user_model, server, volume):
    django_user_model.objects.create_superuser("ops", password=PASSWORD)
    django_user_model.objects.create_user("viewer", password=PASSWORD)  # may look, not act
    WatchedFilesystem.objects.all().delete()
    fs = WatchedFilesystem.objects.create(path=str(volume), label="vol", yellow_for_seconds=0, orange_for_seconds=0)
    engine = Engine.objects.create(name="demo", port=8170, model="/m", served_model_name="demo", state=S.READY,
                                   pid=40001, ready_at=timezone.now() - timedelta(hours=2), last_probe_ms=12,
                                   state_reason="ready; one-token probe 12 ms")
    check_all()
    return fs, engine


@pytest.fixture
def browser(setup):
    with chromium() as browser:
        yield browser


def truth(fs_pk: int) -> dict:
    """What the database (and the admission flag in Redis) say now."""
    fs = WatchedFilesystem.objects.get(pk=fs_pk)
    return {
        "paused": admission.current().paused,
        "open": list(Incident.objects.open().order_by("-opened_at").values_list("pk", "level")),
        "percent": fs.last_percent,
        "engines": list(Engine.objects.values_list("name", "state", "pid")),
    }


def agrees(page, fs_pk: int, db: dict) -> None:
    """Every card that shows a fact shows the database's value (each expect waits for the live update)."""
    expect(page.locator("[data-admission]")).to_have_attribute("data-paused", "true" if db["paused"] else "false")
    expect(page.locator("[data-admission]")).to_contain_text("Paused." if db["paused"] else "Open.")
    open_ids = [str(pk) for pk, _ in db["open"]]
    expect(page.locator("[data-open-count]")).to_have_text(str(len(open_ids)))
    expect(page.locator("[data-open-incidents] [data-incident-id]")).to_have_count(len(open_ids))
    expect(page.locator("#incidents [data-open-incident]")).to_have_count(len(open_ids))
    expect(page.locator("#incidents [data-none]")).to_have_count(0 if open_ids else 1)
    banners = page.locator("#alerts .banner[data-incident]:not([data-monitoring-stalled])")
    expect(banners).to_have_count(sum(level != "yellow" for _, level in db["open"]))
    for pk, level in db["open"]:
        expect(page.locator(f'[data-incident-id="{pk}"] .tag')).to_have_text(level)
        expect(page.locator(f'#incidents [data-open-incident="{pk}"] .tag').first).to_have_text(level)
        expect(page.locator(f'[data-history="{pk}"]')).to_contain_text("open")
        if level == "yellow":
            expect(page.locator(f'#alerts [data-toast-key="{pk}-yellow"]')).to_have_count(1)
        else:
            expect(page.locator(f"#alerts .banner-{level}[data-incident='{pk}']")).to_have_count(1)
    expect(page.locator("#statusbar .pill").first).to_have_class("pill pill-red" if db["paused"] else "pill")
    percent = f"{db['percent']:.1f} %"
    expect(page.locator(f'[data-overview-fs="{fs_pk}"] [data-fs-percent]')).to_have_text(percent)
    expect(page.locator(f'tr[data-fs="{fs_pk}"] .pct')).to_have_text(percent)
    expect(page.locator("#statusbar")).to_contain_text(f"DISK: {round(db['percent'])}%")
    for name, state, pid in db["engines"]:
        for card in (f'[data-overview-engine="{name}"]', f'#engines [data-engine="{name}"]'):
            expect(page.locator(f"{card} [data-engine-state]")).to_have_attribute("data-engine-state", state)
            expect(page.locator(f"{card} [data-engine-pid]")).to_have_text(str(pid) if pid else "–")
            for field in ("up", "probe"):  # the last run's, while restarting, would contradict the state
                shown = page.locator(f"{card} [data-engine-{field}]")
                (expect(shown).not_to_have_text if state == S.READY else expect(shown).to_have_text)("–")


def fits_a_phone(browser, base):
    """On a 360 px phone nothing pushes the page sideways (tables scroll inside their cards) and "Log out" is on
    screen. Checked within the walk below: one server start less for the suite."""
    page = signed_in(browser, base, "ops", width=360)
    expect(page.locator("[data-admission]")).to_have_attribute("data-paused", "true")
    width, inner = page.evaluate(NO_SIDEWAYS_SCROLL)
    assert width <= inner, f"{width} px wide on a {inner} px screen: {page.evaluate(STICKING_OUT)}"
    expect(page.get_by_role("button", name="Log out")).to_be_in_viewport()
    page.context.close()


def test_every_card_agrees_through_a_disk_alert(server, browser, setup, volume):
    fs, engine = setup
    page = signed_in(browser, server, "ops")
    viewer = signed_in(browser, server, "viewer")
    agrees(page, fs.pk, in_db(truth, fs.pk))

    for percent, level in ((86, "yellow"), (93, "orange"), (98, "red")):
        fill_to(volume, percent)
        in_db(check_all)
        db = in_db(truth, fs.pk)
        assert [lvl for _, lvl in db["open"]] == [level]
        for each in (page, viewer):
            agrees(each, fs.pk, db)
    assert db["paused"]
    red = db["open"][0][0]
    # The live cards were drawn once for everyone: the viewer, who may not act, gets no action; the operator's
    # buttons carry their own CSRF token (the acknowledgement is accepted).
    expect(viewer.locator("#incidents form")).to_have_count(0)
    expect(viewer.locator("#engines .actions")).to_have_count(0)
    assert viewer.evaluate("window.loadedOnce") is True
    fits_a_phone(browser, server)  # here, with a red banner and an open incident's forms: the longest top


    empty(volume)
    in_db(check_all)
    db = in_db(truth, fs.pk)
    assert not db["open"] and not db["paused"]
    agrees(page, fs.pk, db)
    expect(page.locator(f'[data-history="{red}"] .events')).to_contain_text(re.compile("resolved", re.I))

    assert page.evaluate("window.loadedOnce") is True  # all of it without a reload

    # Typing into a card holds its update back until the field is left; then an action from the card that came
    # over the websocket works (the viewer's CSRF token was put in).
    fill_to(volume, 98)
    in_db(check_all)
    note = page.locator("#incidents input[name=note]")
    note.fill("freed by hand")
    version = page.evaluate("document.body.dataset.liveVersion")
    in_db(acknowledged_by, "viewer")
    expect(page.locator("body")).not_to_have_attribute("data-live-version", version)
    expect(note).to_have_value("freed by hand")
    expect(page.locator("#incidents")).not_to_contain_text("by viewer")
    note.blur()
    expect(page.locator("#incidents")).to_contain_text("by viewer")
    note = page.locator("#incidents input[name=note]")
    note.fill("freed by hand")
    page.locator("#incidents").get_by_role("button", name="Resolve").click()
    expect(page.locator(".flash")).to_contain_text("Resolved")
    expect(page.locator("#incidents [data-none]")).to_have_count(1)


def acknowledged_by(username: str) -> None:
    """An acknowledgement from elsewhere (another operator's page), published as the view does."""
    acknowledge(Incident.objects.open().get(), User.objects.get(username=username))
    live.publish(force=True)
