"""Tokens per minute per API key, counted from the engine's usage numbers: a key at its limit hears 429 in
OpenAI's error shape with a Retry-After that tells the truth (once that many seconds have passed, enough of
the window has freed to let it in); other keys are not affected; the admin shows each key's usage.

Through the real gateway (uvicorn) in front of a small real upstream: an HTTP server in the test that answers
like an engine, with a usage block. The window's arithmetic is then checked on the same Lua scripts with the
clock frozen (time-machine): the gateway's own process keeps the real clock.
"""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
import time_machine
from asgiref.sync import async_to_sync

from inference.gateway import keys, limits, stats
from inference.gateway.errors import GatewayError
from inference.models import ApiKey, Engine

pytestmark = pytest.mark.django_db(transaction=True)
MODEL = "tpm-model"
USAGE = {"prompt_tokens": 30, "completion_tokens": 20, "total_tokens": 50}


class EngineLike(BaseHTTPRequestHandler):
    """Answers every completion with one short choice and USAGE, as vLLM does for a non-streamed request."""

    protocol_version = "HTTP/1.1"  # keeps the connection, as the gateway's pool expects of an engine

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers["content-length"]))
        body = json.dumps({"id": "cmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
                           "choices": [{"index": 0, "finish_reason": "stop",
                                        "message": {"role": "assistant", "content": "ok"}}],
                           "usage": USAGE}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), EngineLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def ready_engine(port: int) -> None:
    Engine.objects.create(name="tpm-upstream", port=port, model="/nowhere", served_model_name=MODEL)
    Engine.objects.filter(name="tpm-upstream").update(state="ready")
    Engine.objects.get(name="tpm-upstream").save()  # publishes the routing table


def make_key(name: str, **fields) -> tuple[ApiKey, str]:
    key = ApiKey(name=name, **fields)
    plain = key.new_secret()
    key.save()
    return key, plain


def ask(server: str, plain: str) -> httpx.Response:
    return httpx.post(f"{server}/v1/chat/completions", headers={"Authorization": f"Bearer {plain}"}, timeout=30,
                      json={"model": MODEL, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 5})


def test_a_key_over_its_tokens_per_minute_gets_429_with_retry_after(server, upstream, admin_client):
    ready_engine(upstream)
    key, plain = make_key("batch", tokens_per_minute=100)
    _, other = make_key("other", tokens_per_minute=100)
    for _ in range(2):  # 50 tokens each, as the engine counts them: 100 used, the limit reached
        answered = ask(server, plain)
        assert answered.status_code == 200, answered.text
        assert answered.json()["usage"] == USAGE
    refused = ask(server, plain)
    assert refused.status_code == 429, refused.text
    assert refused.headers["content-type"] == "application/json"
    error = refused.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert (error["type"], error["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert "100 tokens per minute" in error["message"]
    wait = int(refused.headers["retry-after"])
    assert 1 <= wait <= 60 and f"Try again in {wait} s." in error["message"]

    assert ask(server, other).status_code == 200  # another key's window is its own

    listing = admin_client.get("/admin/inference/apikey/").content.decode()
    assert "100 (60 + 40)" in listing  # batch: prompt + completion tokens of its two answers
    page = admin_client.get(f"/admin/inference/apikey/{key.pk}/change/").content.decode()
    assert "100 (60 + 40)" in page
    usage = limits.usage(key.key_hash)
    assert usage["requests"] == 2 and usage["last_used"] is not None  # the refusal is not a request served


def test_retry_after_is_when_enough_of_the_window_has_freed(db):
    """Three answers of 40 tokens at 0 s, 10 s and 20 s against a limit of 100: at 25 s the key is refused
    until the first leaves the window (60 s), which brings it to 80, under the limit; not before."""
    key, plain = make_key("clocked", tokens_per_minute=100)
    caller = keys.Caller("key", key.pk, str(key), tpm=100, ident=key.key_hash)
    start = float(int(time.time()))
    finished = stats.Outcome(caller.stats_label, MODEL, "e", 200, prompt_tokens=25, completion_tokens=15)

    async def answer_at(request_id: str):
        await limits.admit(caller, request_id, time.time())
        await stats.finish(finished, request_id, [limits.busy_key(caller)], limits.usage_keys(caller))

    async def refused_at() -> GatewayError:
        with pytest.raises(GatewayError) as refused:
            await limits.admit(caller, "probe", time.time())
        return refused.value

    with time_machine.travel(start, tick=False) as clock:
        for offset, request_id in ((0, "a"), (10, "b"), (20, "c")):
            clock.move_to(start + offset)
            async_to_sync(answer_at)(request_id)
        clock.move_to(start + 25)
        error = async_to_sync(refused_at)()
        assert (error.status, error.code, error.retry_after) == (429, "rate_limit_exceeded", 35)
        clock.move_to(start + 59)
        assert async_to_sync(refused_at)().retry_after == 1
        clock.move_to(start + 60)  # the wait it was told at 25 s: now admitted
        async_to_sync(limits.admit)(caller, "fits", time.time())
