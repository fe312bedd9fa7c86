"""The gateway's refusals over real HTTP (uvicorn): keys, guards, pause, limits, unknown and loading models.

No engine is needed: every refusal here happens before a request would reach one.
"""

import time

import httpx
import pytest
import time_machine
from asgiref.sync import async_to_sync

from inference.gateway import keys, limits, relay, stats
from inference.gateway.errors import GatewayError
from inference.models import ApiKey, Engine
from monitoring.disk_check import simulate

pytestmark = pytest.mark.django_db(transaction=True)


def make_key(name="tests", **fields) -> tuple[ApiKey, str]:
    key = ApiKey(name=name, **fields)
    plain = key.new_secret()
    key.save()
    return key, plain


def post(server, plain, body=None, path="/v1/chat/completions", **kwargs):
    headers = {"Authorization": f"Bearer {plain}"} if plain else {}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{server}{path}", headers=headers, timeout=30, **kwargs)


def error_of(response) -> dict:
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


CHAT = {"model": "demo", "messages": [{"role": "user", "content": "hi"}]}


def test_missing_invalid_and_revoked_keys_get_401(server):
    key, plain = make_key()
    missing = post(server, None, CHAT)
    assert missing.status_code == 401
    assert error_of(missing)["code"] == "invalid_api_key"
    assert "Authorization: Bearer" in error_of(missing)["message"]
    assert error_of(post(server, "sk-glm-not-a-key", CHAT))["code"] == "invalid_api_key"
    # A valid key gets past authentication (to the routing, which knows no such model).
    assert post(server, plain, CHAT).status_code == 404
    key.revoked_at = key.created_at
    key.save()
    revoked = post(server, plain, CHAT)
    assert revoked.status_code == 401
    assert error_of(revoked)["message"] == "Invalid API key: it is unknown or was revoked."


def test_only_the_hash_of_a_key_is_stored(db):
    key, plain = make_key()
    stored = ApiKey.objects.get(pk=key.pk)
    assert plain.startswith("sk-glm-") and len(plain) > 40
    assert stored.key_hash == ApiKey.hash(plain) != plain
    assert plain not in {str(value) for value in ApiKey.objects.values().get(pk=key.pk).values()}
    assert plain.startswith(stored.prefix)


def test_admin_shows_a_new_key_once(admin_client):
    response = admin_client.post("/admin/inference/apikey/add/", {
        "name": "batch jobs", "requests_per_minute": 30, "max_concurrent": 2}, follow=True)
    message = next(str(m) for m in response.context["messages"])
    plain = message.split(" is ")[1].split(" ")[0]
    key = ApiKey.objects.get(name="batch jobs")
    assert key.key_hash == ApiKey.hash(plain)
    assert "cannot be shown again" in message
    page = admin_client.get(f"/admin/inference/apikey/{key.pk}/change/")
    assert plain not in page.content.decode()


def test_a_new_key_never_travels_in_a_cookie(admin_client):
    response = admin_client.post("/admin/inference/apikey/add/", {
        "name": "cookie check", "requests_per_minute": 30, "max_concurrent": 2})
    assert response.status_code == 302
    # Messages live in the session (server side): the browser gets no cookie holding the key.
    assert "messages" not in response.cookies
    assert not any("sk-glm-" in morsel.value for morsel in response.cookies.values())
    announced = "The new API key for cookie check is sk-glm-"
    assert announced in admin_client.get(response["Location"]).content.decode()
    assert announced not in admin_client.get(response["Location"]).content.decode()  # shown once


def test_only_models_routing_knows_are_counted_by_name(server):
    _, plain = make_key()
    Engine.objects.create(name="known", port=8147, model="/nowhere", served_model_name="demo-known")
    Engine.objects.filter(name="known").update(state="starting")
    Engine.objects.get(name="known").save()
    for i in range(5):
        assert post(server, plain, {**CHAT, "model": f"random-{i}"}).status_code == 404
    assert post(server, plain, {**CHAT, "model": "demo-known"}).status_code == 503
    assert post(server, plain, {**CHAT, "model": "random-x", "max_tokens": "bad"}).status_code == 400
    fields = list(stats.totals())
    assert not [field for field in fields if "random-" in field]
    requests = {tuple(field.split(stats.SEP)[2:]): value for field, value in stats.totals().items()
                if field.startswith("req" + stats.SEP)}
    assert requests == {("-", "-", "404"): 5, ("demo-known", "-", "503"): 1, ("-", "-", "400"): 1}


def test_a_disabled_engine_gets_no_requests_even_when_ready(server):
    _, plain = make_key()
    Engine.objects.create(name="off", port=8147, model="/nowhere", served_model_name="demo-off", enabled=False)
    Engine.objects.filter(name="off").update(state="ready")
    Engine.objects.get(name="off").save()
    refused = post(server, plain, {**CHAT, "model": "demo-off"})
    assert refused.status_code == 404 and error_of(refused)["code"] == "model_not_found"
    models = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {plain}"}).json()
    assert models["data"] == []


def test_admin_revoke_action_stops_the_key(admin_client, server):
    key, plain = make_key()
    assert post(server, plain, CHAT).status_code == 404
    admin_client.post("/admin/inference/apikey/", {"action": "revoke_selected", "_selected_action": [key.pk]})
    key.refresh_from_db()
    assert key.revoked_at is not None
    assert post(server, plain, CHAT).status_code == 401


@pytest.mark.parametrize(("body", "code", "param"), [
    ({"messages": [{"role": "user", "content": "hi"}]}, "missing_field", "model"),
    ({"model": "demo"}, "missing_field", "messages"),
    ({"model": 7, "messages": []}, "invalid_type", "model"),
    ({**CHAT, "messages": "hi"}, "invalid_type", "messages"),
    ({**CHAT, "messages": [{"role": "user", "content": 5}]}, "invalid_type", "messages[0].content"),
    ({**CHAT, "max_tokens": "10"}, "invalid_type", "max_tokens"),
    ({**CHAT, "max_tokens": True}, "invalid_type", "max_tokens"),
    ({**CHAT, "stream": "yes"}, "invalid_type", "stream"),
    ({**CHAT, "temperature": "hot"}, "invalid_type", "temperature"),
    ({**CHAT, "max_tokens": 10**6}, "max_tokens_too_large", "max_tokens"),
    ({**CHAT, "messages": [{"role": "user", "content": "x" * 200_001}]}, "prompt_too_long", "messages"),
    # n answers are n generations in one concurrency slot: capped (GATEWAY_MAX_N, 4 by default).
    ({**CHAT, "n": 64}, "n_too_large", "n"),
    ({**CHAT, "n": 0}, "invalid_value", "n"),
    ([1, 2], "invalid_type", None),
])
def test_bad_chat_bodies_get_400_naming_the_field(server, body, code, param, settings):
    _, plain = make_key()
    response = post(server, plain, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert (error["code"], error["param"]) == (code, param)
    if param:
        assert param.split("[")[0] in error["message"]


def test_bad_completion_bodies_and_malformed_json(server):
    _, plain = make_key()
    missing = error_of(post(server, plain, {"model": "demo"}, path="/v1/completions"))
    assert (missing["code"], missing["param"]) == ("missing_field", "prompt")
    wrong = error_of(post(server, plain, {"model": "demo", "prompt": {"a": 1}}, path="/v1/completions"))
    assert (wrong["code"], wrong["param"]) == ("invalid_type", "prompt")
    broken = post(server, plain, content=b'{"model": "demo", ', path="/v1/completions")
    assert broken.status_code == 400 and error_of(broken)["code"] == "invalid_json"
    assert "not valid JSON" in error_of(broken)["message"]
    huge = post(server, plain, content=b"[" + b"1," * 600_000 + b"1]", path="/v1/completions")
    assert huge.status_code == 400 and error_of(huge)["code"] == "request_too_large"
    many = error_of(post(server, plain, {"model": "demo", "prompt": "x", "best_of": 20}, path="/v1/completions"))
    assert (many["code"], many["param"]) == ("best_of_too_large", "best_of") and "at most 4" in many["message"]
    # Nesting deep enough to exhaust the JSON parser's recursion is a 400 in the API's shape, not a crash.
    deep = post(server, plain, content=b"[" * 100_000 + b"]" * 100_000, path="/v1/completions")
    assert deep.status_code == 400 and error_of(deep)["code"] == "invalid_json"
    assert "nested too deeply" in error_of(deep)["message"]


def test_unknown_model_is_404_and_a_loading_one_503(server):
    _, plain = make_key()
    Engine.objects.create(name="loading", port=8147, model="/nowhere", served_model_name="demo-loading")
    Engine.objects.filter(name="loading").update(state="starting")
    Engine.objects.get(name="loading").save()  # publishes the routing table, as the supervisor does
    unknown = post(server, plain, {**CHAT, "model": "nope"})
    assert unknown.status_code == 404
    assert error_of(unknown)["code"] == "model_not_found" and "'nope'" in error_of(unknown)["message"]
    loading = post(server, plain, {**CHAT, "model": "demo-loading"})
    assert loading.status_code == 503 and int(loading.headers["retry-after"]) > 0
    assert error_of(loading)["code"] == "model_loading" and "is loading" in error_of(loading)["message"]
    # /v1/models lists only models of ready engines.
    models = httpx.get(f"{server}/v1/models", headers={"Authorization": f"Bearer {plain}"}).json()
    assert models == {"object": "list", "data": []}


def test_red_disk_alert_pauses_new_requests_with_retry_after(server):
    _, plain = make_key()
    simulate("red")
    paused = post(server, plain, CHAT)
    assert paused.status_code == 503 and int(paused.headers["retry-after"]) > 0
    error = error_of(paused)
    assert error["code"] == "requests_paused"
    assert error["message"].startswith("New requests are paused while a critical alert is open")
    simulate(None)
    assert post(server, plain, CHAT).status_code == 404  # admitted again (and then: no such model)


def test_requests_per_minute_limit_gives_429_with_retry_after(server):
    _, plain = make_key(requests_per_minute=2)
    assert [post(server, plain, CHAT).status_code for _ in range(2)] == [404, 404]
    limited = post(server, plain, CHAT)
    assert limited.status_code == 429
    assert error_of(limited)["code"] == "rate_limit_exceeded"
    assert "2 requests per minute" in error_of(limited)["message"]
    assert 1 <= int(limited.headers["retry-after"]) <= 60
    # Another key has its own budget.
    _, other = make_key("other", requests_per_minute=2)
    assert post(server, other, CHAT).status_code == 404


def test_rate_window_slides_with_time(db):
    caller = keys.Caller("key", 99, "timed", rpm=1)

    def attempt():
        try:
            async_to_sync(relay.open_stream)(caller, "completions", {"model": "nope", "prompt": "x"})
        except GatewayError as exc:
            return exc.code
        raise AssertionError("no engine serves 'nope': the request cannot succeed")

    with time_machine.travel(time.time(), tick=False) as clock:
        assert attempt() == "model_not_found"
        clock.shift(30)
        assert attempt() == "rate_limit_exceeded"
        clock.shift(31)
        assert attempt() == "model_not_found"


def test_concurrency_limit_counts_requests_in_flight(db):
    caller = keys.Caller("user", 5, "alice")

    async def scenario(settings_limit):
        held = [f"r{i}" for i in range(settings_limit)]
        for request_id in held:
            await limits.admit(caller, request_id, time.time())
        with pytest.raises(GatewayError) as refused:
            await limits.admit(caller, "one-more", time.time())
        from inference.gateway import redis_state

        pipe = redis_state.client().pipeline()
        limits.release(pipe, caller, held[0])
        await pipe.execute()
        await limits.admit(caller, "now-fits", time.time())
        return refused.value

    from django.conf import settings

    refused = async_to_sync(scenario)(settings.GATEWAY_USER_CONCURRENCY)
    assert (refused.status, refused.code, refused.retry_after) == (429, "concurrency_limit_exceeded", 1)


def test_unknown_paths_and_methods(server):
    _, plain = make_key()
    headers = {"Authorization": f"Bearer {plain}"}
    assert httpx.get(f"{server}/v1/engines", headers=headers).status_code == 404
    wrong = httpx.get(f"{server}/v1/chat/completions", headers=headers)
    assert wrong.status_code == 405 and "Use POST" in error_of(wrong)["message"]
