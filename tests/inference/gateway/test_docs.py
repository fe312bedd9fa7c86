"""The API docs page, the OpenAPI schema, the dashboard's gateway panel and the Prometheus collector."""

import pytest
from playwright.sync_api import expect
from prometheus_client import CollectorRegistry, generate_latest

from glmadmin import exporter
from inference.gateway import stats
from inference.gateway.prometheus import GatewayCollector
from inference.models import ApiKey
from tests.support.browser import chromium

PASSWORD = "pw-docs-12345"


@pytest.mark.django_db
def test_docs_and_schema_need_a_login(client):
    for url in ("/api/docs/", "/api/openapi.json"):
        response = client.get(url)
        assert response.status_code == 302 and response["Location"].startswith("/login/")


@pytest.mark.django_db
def test_schema_describes_the_three_endpoints_and_the_error_shape(admin_client, settings):
    schema = admin_client.get("/api/openapi.json").json()
    assert schema["openapi"].startswith("3.")
    assert set(schema["paths"]) == {"/v1/chat/completions", "/v1/completions", "/v1/models"}
    chat = schema["paths"]["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body["required"] == ["model", "messages"]
    assert body["properties"]["max_tokens"]["maximum"] == settings.GATEWAY_MAX_TOKENS
    assert {"400", "401", "404", "429", "503"} <= set(chat["responses"])
    error = schema["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert set(error) == {"message", "type", "param", "code"} and "requests_paused" in error["code"]["enum"]


@pytest.mark.django_db
def test_docs_page_lists_operations_server_rendered(admin_client):
    page = admin_client.get("/api/docs/").content.decode()
    for path in ("/v1/chat/completions", "/v1/completions", "/v1/models"):
        assert f"<code>{path}</code>" in page
    assert "glmadmin/apidocs.js" in page and "cdn" not in page.lower()


@pytest.mark.django_db
def test_dashboard_panel_shows_the_last_hour(admin_client):
    stats.add_sync(stats.Outcome("key:ci", "demo", "e1", 200, first_byte_s=0.03, duration_s=0.4,
                                 prompt_tokens=5, completion_tokens=20))
    stats.add_sync(stats.Outcome("key:ci", "demo", "-", 429))
    page = admin_client.get("/").content.decode()
    panel = page[page.index('id="gateway-panel"'):]
    panel = panel[:panel.index("</section>")]
    assert "2 request(s), 1 error(s)" in panel
    row = panel[panel.index('data-model="demo"'):]
    row = row[:row.index("</tr>")]
    assert [cell.split("<")[0] for cell in row.split("<td>")[2:]] == ["2", "1", "≤ 50 ms", "≤ 500 ms", "25"]
    assert 'data-caller="key:ci"' in panel


@pytest.mark.django_db
def test_collector_is_registered_and_renders_counters():
    assert any(isinstance(c, GatewayCollector) for c in exporter.collectors())
    stats.add_sync(stats.Outcome("key:ci", "demo", "e1", 200, first_byte_s=0.03, duration_s=0.4,
                                 completion_tokens=20))
    registry = CollectorRegistry()
    registry.register(GatewayCollector())
    text = generate_latest(registry).decode()
    assert 'glmadmin_gateway_requests_total{caller="key:ci",engine="e1",model="demo",status="200"} 1.0' in text
    assert 'glmadmin_gateway_tokens_total{caller="key:ci",kind="completion",model="demo"} 20.0' in text
    assert 'glmadmin_gateway_first_byte_seconds_bucket{le="0.05",model="demo"} 1.0' in text
    assert 'glmadmin_gateway_first_byte_seconds_bucket{le="0.025",model="demo"} 0.0' in text


@pytest.mark.browser
def test_try_it_sends_a_request_with_the_key(server, django_user_model):
    django_user_model.objects.create_user("docs", password=PASSWORD)
    key = ApiKey(name="browser")
    plain = key.new_secret()
    key.save()
    with chromium() as browser:
        page = browser.new_context().new_page()
        page.goto(f"{server}/api/docs/")
        page.fill("input[name=username]", "docs")
        page.fill("input[name=password]", PASSWORD)
        page.click("button[type=submit]")
        operation = page.locator("#listModels")
        operation.locator("summary").click()
        operation.locator("input[name=key]").fill(plain)
        operation.locator("button[type=submit]").click()
        expect(operation.locator("[data-status]")).to_have_text("200 OK")
        expect(operation.locator("[data-output]")).to_contain_text('"object": "list"')
        # A wrong key shows the API's own error.
        operation.locator("input[name=key]").fill("sk-glm-wrong")
        operation.locator("button[type=submit]").click()
        expect(operation.locator("[data-status]")).to_have_text("401 Unauthorized")
        expect(operation.locator("[data-output]")).to_contain_text("invalid_api_key")
        browser.close()
