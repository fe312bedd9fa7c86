"""The chat, the API docs and the engine page on a 360 px phone in Debian's Chromium: nothing makes the page
scroll sideways (long model paths, log lines, API paths and table cells wrap or scroll inside their own box).
The dashboard's own check is in its test module."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from playwright.sync_api import expect

from inference.models import Engine, EngineEvent
from inference.models import EngineState as S
from monitoring.models import EngineSample
from monitoring.telemetry import charts
from tests.support.browser import PASSWORD, chromium

pytestmark = [pytest.mark.browser]
NO_SIDEWAYS_SCROLL = "() => [document.documentElement.scrollWidth, window.innerWidth]"
# What sticks out, for the failure message: the outermost elements whose right edge is past the screen's.
STICKING_OUT = """() => [...document.querySelectorAll("body *")].filter(el => {
  const out = e => e.getBoundingClientRect().right > window.innerWidth + 0.5;
  return out(el) && !(el.parentElement && out(el.parentElement));
}).slice(0, 8).map(el => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "") +
  (el.className && typeof el.className === "string" ? "." + el.className.trim().split(/\\s+/).join(".") : "") +
  " " + Math.round(el.getBoundingClientRect().right) + " px")"""


@pytest.fixture
def engine(transactional_db):
    # Made before the browser starts (Playwright's event loop makes the ORM refuse): a row, no process; what
    # the page shows of it is as long as real ones get.
    engine = Engine.objects.create(
        name="glm-4-7-flash-production-a", port=8200, served_model_name="zai-org/GLM-4.7-Flash-FP8-dynamic",
        model="/srv/models/zai-org/GLM-4.7-Flash-FP8-dynamic/snapshots/0123456789abcdef0123456789abcdef01234567",
        gpu_ids="0,1,2,3", tensor_parallel_size=4, state=S.BACKOFF, pid=4242, extra_args=["--seed", "1"] * 8,
        running_config={"port": 8100, "env": {}}, env={"VLLM_LOGGING_LEVEL": "DEBUG", "NCCL_DEBUG": "INFO"},
        state_reason="process 4242 exited with status 1: torch.OutOfMemoryError: CUDA out of memory. Tried to "
                     "allocate 20.00 GiB; retrying in 30 s")
    EngineEvent.objects.create(engine=engine, at=engine.state_changed_at or "2026-11-30T10:00:00Z", state=S.BACKOFF,
                               previous=S.READY, reason=engine.state_reason, pid=4242)
    for minutes in (1, 2, 3):  # its metrics charts, drawn from samples as the sampler draws them
        EngineSample.objects.create(at=timezone.now() - timedelta(minutes=minutes), engine_id=engine.pk,
                                    kv_cache_usage=40.0, ttft_p95=0.2, generation_tokens_per_s=150.0)
    charts.refresh()
    log = settings.ENGINE_DIR / engine.name / "engine.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_bytes(b"INFO " + b"/a/very/long/path" * 200 + b"\n" + b"\xff\xfe" + b"x" * 5000 + b"\n")
    return engine


@pytest.fixture
def browser(engine, django_user_model, server):
    django_user_model.objects.create_superuser("ops", password=PASSWORD)
    with chromium() as browser:
        yield browser


def test_no_sideways_scroll_at_360_px(server, browser, engine):
    page = browser.new_context(viewport={"width": 360, "height": 740}).new_page()
    page.goto(f"{server}/login/")
    page.fill("input[name=username]", "ops")
    page.fill("input[name=password]", PASSWORD)
    page.click("button[type=submit]")
    pages = [("/chat/", "#chat-form"), ("/api/docs/", ".api-op"), (f"/engines/{engine.pk}/", "#engine-charts svg")]
    for path, ready in pages:
        page.goto(f"{server}{path}")
        expect(page.locator(ready).first).to_be_visible()
        page.evaluate("document.querySelectorAll('details').forEach(d => d.open = true)")  # folded parts too
        width, viewport = page.evaluate(NO_SIDEWAYS_SCROLL)
        assert width <= viewport, (f"{path} is {width} px wide on a {viewport} px screen: "
                                   f"{page.evaluate(STICKING_OUT)}")
