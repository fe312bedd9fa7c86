"""The dashboard's GPU cards, engine metrics and charts, drawn on the server and updated live."""

import re
import threading
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.testing.websocket import WebsocketCommunicator
from django.utils import timezone
from playwright.sync_api import expect

from glmadmin import live
from glmadmin.asgi import application
from inference.models import Engine
from monitoring import tasks
from monitoring.telemetry import store
from monitoring.telemetry.rules import evaluate as rules
from tests.support import fake_nvml
from tests.support.browser import PASSWORD, chromium
from tests.support.telemetry import ProcessTree, cycle
from tests.support.websocket import ORIGIN, session_cookie


@pytest.fixture
def quiet_rules(monkeypatch):
    monkeypatch.setattr(rules, "evaluate", lambda cycle: None)


@pytest.fixture
def nvml(monkeypatch):
    return fake_nvml.install(monkeypatch, fake_nvml.FakeNvml([fake_nvml.gpu(0, util=37)]))


def history(minutes: int):
    """Stored cycles over the last minutes, as the sampler would have left them."""
    now = timezone.now()
    for i in range(minutes * 6, 0, -1):
        store.save(cycle(now - timedelta(seconds=10 * i), used=i % 80, util=float(i % 100), tps=12.5))


@pytest.mark.django_db
def test_cards_metrics_and_charts(admin_client, nvml, quiet_rules, monkeypatch):
    tree = ProcessTree()
    try:
        # id 7: the engine of the stored history
        Engine.objects.create(id=7, name="big", port=8162, model="/m", served_model_name="m", pid=tree.leader.pid,
                                       process_started_at=tree.create_time)
        nvml.gpus[0]["processes"] = [(tree.grandchild, 20 * 2**30), (424242, 2**30)]
        history(30)
        tasks.sample_telemetry()
    finally:
        tree.kill()
    page = admin_client.get("/").content.decode()
    card = page[page.index('data-gpu="0"'):page.index('id="engine-metrics"')]
    assert "NVIDIA H100 80GB HBM3" in card and "37 %" in card and "54 °C" in card and "210 / 700 W" in card
    assert re.search(rf'data-pid="{tree.grandchild}">.*?tag-engine">big<', card)
    assert re.search(r'data-pid="424242"><td><code>424242</code></td><td>\?</td><td><span class="tag">foreign', card)
    assert 'data-engine-metrics="big"' in page  # the engine's RSS reading of this cycle
    for key in ("gpu_memory", "gpu_util", "kv_cache", "tokens_per_s"):
        chart = page[page.index(f'data-chart="{key}-hour"'):]
        chart = chart[:chart.index("</figure>")]
        path = re.search(r'<path class="series-0" d="([^"]+)"', chart)
        assert path and path.group(1).count("L") > 30, key  # a line across the half hour of history
    assert "Tokens/s" in page and "12.5 tok/s" in page


@pytest.mark.django_db
def test_no_gpu_is_shown_calmly(admin_client, monkeypatch, quiet_rules):
    fake_nvml.install(monkeypatch, fake_nvml.FakeNvml(init_error=fake_nvml.NVMLError_DriverNotLoaded()))
    tasks.sample_telemetry()
    page = admin_client.get("/").content.decode()
    assert "No GPU on this host" in page and 'class="error"' not in page[page.index('id="gpus"'):page.index(
        'id="engine-metrics"')]


@pytest.mark.django_db
def test_a_page_before_the_first_sample(admin_client):
    assert "Not sampled yet" in admin_client.get("/").content.decode()


@pytest.mark.django_db(transaction=True)
async def test_cycles_reach_open_pages_and_nothing_is_sent_twice(django_user_model, nvml, quiet_rules):
    cookie = await session_cookie(django_user_model)
    ws = WebsocketCommunicator(application, "/ws/live/?page=dashboard", headers=[ORIGIN, cookie])
    assert (await ws.connect())[0]
    first = await ws.receive_json_from(timeout=30)
    assert "Not sampled yet" in first["html"]["telemetry"]
    await database_sync_to_async(tasks.sample_telemetry)()
    sampled = await ws.receive_json_from(timeout=30)
    assert sampled["state"]["telemetry"]["hosts"][0]["gpus"][0]["utilization"] == 37
    assert 'data-gpu="0"' in sampled["html"]["telemetry"]
    # The same state again is not published.
    assert await database_sync_to_async(live.publish)() is False
    assert await ws.receive_nothing(timeout=0.5)
    nvml.gpus[0]["util"] = 88
    await database_sync_to_async(tasks.sample_telemetry)()
    changed = await ws.receive_json_from(timeout=30)
    assert changed["state"]["telemetry"]["hosts"][0]["gpus"][0]["utilization"] == 88
    assert "88 %" in changed["html"]["telemetry"]
    await ws.disconnect()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_an_open_dashboard_follows_the_samples(server, django_user_model, nvml, quiet_rules):
    django_user_model.objects.create_user("ops", password=PASSWORD)
    tasks.sample_telemetry()
    with chromium() as browser:
        page = browser.new_context().new_page()
        page.goto(f"{server}/")
        page.fill("input[name=username]", "ops")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        expect(page.locator('[data-gpu="0"]')).to_contain_text("37 %")
        expect(page.locator("body.live")).to_be_attached()
        page.evaluate("window.loadedOnce = true")
        nvml.gpus[0]["util"] = 91
        # Playwright's loop runs in this thread and the ORM refuses it: the cycle runs beside it.
        worker = threading.Thread(target=tasks.sample_telemetry)
        worker.start()
        worker.join()
        expect(page.locator('[data-gpu="0"]')).to_contain_text("91 %")
        # The card came over the websocket with the sample's time; the browser writes it as an age.
        expect(page.locator("#gpus h2 time[data-ago]")).to_have_text(re.compile(r"^(now|\d+ s ago)$"))
        expect(page.locator('[data-chart="gpu_util-hour"] path')).to_have_count(1)
        assert page.evaluate("window.loadedOnce") is True  # updated in place, not reloaded
        # The values on hover, in a chart that came over the websocket: the last bucket holds both samples.
        plot = page.locator('[data-chart="gpu_util-hour"] .plotarea')
        box = plot.bounding_box()
        plot.hover(position={"x": box["width"] - 1, "y": box["height"] / 2})
        expect(plot.locator(".tip")).to_be_visible()
        expect(plot.locator(".tip")).to_contain_text("GPU 0: 64.0 %")  # (37 + 91) / 2
        browser.close()
