"""The gateway in front of two real vLLM engines (CPU build, demo model), over real HTTP.

The engines are started once for the module; each test's rows adopt the running
processes (see tests/inference/engines/test_pool.py). The gateway is the real uvicorn server.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import httpx
import openai
import psutil
import pytest
from asgiref.sync import async_to_sync

from glmadmin.lib import processes
from glmadmin.lib import redis as rd
from inference import demo, engine_client, supervisor
from inference.gateway import admit_and_route, keys, routing, sse, stats
from inference.models import ApiKey, Engine
from inference.models import EngineState as S
from monitoring.disk_check import simulate
from tests.support.engines import engine_processes, require_runtime
from tests.support.processes import ROOT, subprocess_env

PORTS = (8140, 8141)
GHOST_PORT = 8142  # an engine row with nothing listening: a connection failure
MODEL = "demo-gw"
STARTUP = 600
# Greedy decoding of the demo model's random weights never ends early: max_tokens tokens, always. 10,000 (the
# context stretched past the model's 4,096 positions) keep the demo engine busy for seconds (float32 on a
# CPU); the tests that act on a running request do not race it: they act at its first event or prompt.
LONG = {"temperature": 0, "max_tokens": 10_000, "ignore_eos": True}
CONTEXT = 12_288
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def demo_model(tmp_path_factory):
    require_runtime()
    return demo.make_model(tmp_path_factory.mktemp("models") / "demo")


@pytest.fixture(scope="module", autouse=True)
def no_engine_left_behind():
    yield
    for port in PORTS:
        for proc in engine_processes(port):
            segments = processes.shared_memory(proc.pid)
            processes.kill_group(proc.pid)
            processes.remove_shared_memory(segments)


@pytest.fixture(autouse=True)
def long_answers_allowed(monkeypatch, settings):
    # Read by the server process when it starts, and by this one.
    monkeypatch.setenv("GLMADMIN_GATEWAY_MAX_TOKENS", str(LONG["max_tokens"]))
    settings.GATEWAY_MAX_TOKENS = LONG["max_tokens"]


@pytest.fixture
def engines(transactional_db, demo_model):
    rows = [Engine.objects.create(name=f"gw-{i}", port=port, model=str(demo_model), served_model_name=MODEL,
                                  enforce_eager=True, shutdown_timeout=30, max_model_len=CONTEXT,
                                  extra_args=demo.ENGINE_ARGS,
                                  # vLLM's CPU build would pin both engines' threads to the same core; pinned
                                  # per engine, a restarted engine once hung for minutes in sched_setaffinity
                                  # (this VM's kernel) while the other ran on its core. The OS places them.
                                  env={"VLLM_CPU_OMP_THREADS_BIND": "nobind", "VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})
            for i, port in enumerate(PORTS)]
    deadline = time.monotonic() + STARTUP
    while True:  # both at once: they start side by side
        for row in rows:
            supervisor.reconcile(row.pk)
            row.refresh_from_db()
        if all(row.state == S.READY for row in rows):
            return rows
        assert time.monotonic() < deadline, f"engines not ready: {[(r.name, r.state, r.state_reason) for r in rows]}"
        time.sleep(0.3)  # the pace of the supervisor's steps


@pytest.fixture
def key(engines):
    row = ApiKey(name="gateway-tests", max_concurrent=50, requests_per_minute=10**6)
    plain = row.new_secret()
    row.save()
    return plain


def auth(plain):
    return {"Authorization": f"Bearer {plain}"}


def wait_for(condition, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        assert time.monotonic() < deadline, f"{what} not seen in {timeout} s"
        time.sleep(0.1)  # the pace of polling, not a wait for an event
    return result


def running(engine) -> int:
    return int((engine_client.metric_values(engine) or {}).get("vllm:num_requests_running", 0))


def engine_totals(engine) -> tuple[int, int]:
    """Prompt tokens the engine took in and tokens it generated since it started: a request that reached
    the engine adds to the first; an aborted one stops adding to the second."""
    values = engine_client.metric_values(engine, timeout=15)
    assert values is not None, f"{engine.name} did not answer /metrics"
    return int(values["vllm:prompt_tokens_total"]), int(values["vllm:generation_tokens_total"])


def busy(plain) -> int:
    """Requests the key holds a concurrency slot for now."""
    return rd.client().zcount(admit_and_route.slot_keys(keys.Presented(plain))[1], time.time(), "+inf")


def engine_counts(status: int = 200) -> dict[str, float]:
    """Requests counted per engine name with this status."""
    counts: dict[str, float] = {}
    for field, value in stats.totals().items():
        parts = field.split(stats.SEP)
        if parts[0] == "req" and parts[4] == str(status):
            counts[parts[3]] = counts.get(parts[3], 0) + value
    return counts


class HeldStream:
    """A long stream through the gateway, read in a thread until stopped: a request in flight.

    paused: after its first events the client reads no more (as a slow reader would). The gateway then
    waits on the client and the request stays in flight however fast the engine is; a stream read on
    (paused=False) ends when the engine has generated all of it. A paused reader's socket gets a small
    receive buffer: loopback TCP buffers grow to megabytes, enough to take a whole answer of the demo
    engine, and the gateway would finish the request into them."""

    def __init__(self, server, plain, body=None, paused=True, leave=False):
        self.events, self.error, self.stop, self.started = [], None, threading.Event(), threading.Event()
        if leave:  # the client closes the connection as soon as it has its first event
            self.stop.set()
        options = [(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)] if paused else None
        self.client = httpx.Client(timeout=120, transport=httpx.HTTPTransport(socket_options=options))
        body = body or {"model": MODEL, "prompt": "hold", "stream": True, **LONG}
        self.thread = threading.Thread(target=self._read, args=(server, plain, body, paused), daemon=True)
        self.thread.start()
        assert self.started.wait(60), "no first chunk in 60 s"

    def _read(self, server, plain, body, paused):
        try:
            with self.client.stream("POST", f"{server}/v1/completions", json=body, headers=auth(plain)) as r:
                self.status = r.status_code
                buffer = b""
                for chunk in r.iter_raw():
                    buffer += chunk
                    *done, buffer = buffer.split(b"\n\n")
                    self.events += [event.decode()[6:] for event in done]
                    if self.events:
                        self.started.set()
                    if paused and self.events:
                        self.stop.wait()
                    if self.stop.is_set():
                        return  # leaving the block closes the connection: the client went away
        except Exception as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
        finally:
            self.started.set()

    def close(self):
        self.stop.set()
        self.thread.join(timeout=60)
        self.client.close()


def test_non_streaming_and_streaming_pass_through(server, key, engines):
    answer = httpx.post(f"{server}/v1/completions", headers=auth(key), timeout=60,
                        json={"model": MODEL, "prompt": "hello", "max_tokens": 5, "ignore_eos": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["usage"]["completion_tokens"] == 5 and answer.json()["model"] == MODEL

    # Long enough (seconds of the engine's work) that the first read comes while the engine still generates: a
    # gateway that gathered the answer would pass nothing on before the engine finished. (Counting reads instead
    # is not stable: on a loaded machine vLLM hands a 300-token answer on in 4 bursts.)
    tokens = 2_000
    body = {"model": MODEL, "messages": [{"role": "user", "content": "hello"}], "max_tokens": tokens,
            "stream": True, "ignore_eos": True, "stream_options": {"include_usage": True}}
    chunks, generating_at_first_read = [], None
    with httpx.stream("POST", f"{server}/v1/chat/completions", headers=auth(key), json=body, timeout=120) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for chunk in r.iter_raw():
            if not chunks:
                generating_at_first_read = sum(running(engine) for engine in engines)
            chunks.append(chunk)
    assert generating_at_first_read == 1, "the first events reached the client only after the engine finished"

    async def events():
        async def source():
            for chunk in chunks:
                yield chunk
        return [data async for data in sse.sse_data(source())]

    data = async_to_sync(events)()
    assert data[-1] == "[DONE]"
    parsed = [json.loads(d) for d in data[:-1]]
    assert parsed[-1]["usage"]["completion_tokens"] == tokens
    # Text in many events (not one per token: vLLM sends no delta for a token that decodes to no text yet).
    assert sum(1 for p in parsed if p["choices"] and p["choices"][0]["delta"].get("content") is not None) > 5
    # More than one read: the first came while the engine generated, [DONE] after. (Where the client's reads end
    # is TCP's business, not a property of the gateway: under load a large write reaches the client in pieces.)
    assert len(chunks) > 1
    # Both requests counted, with tokens.
    summary = stats.summary(stats.last_hour())
    row = next(r for r in summary["models"] if r["name"] == MODEL)
    assert row["requests"] == 2 and row["errors"] == 0 and row["tokens"] >= 5 + tokens
    assert row["p50_ttfb"] is not None


def test_the_official_openai_client_works_by_changing_base_url(server, key):
    client = openai.OpenAI(base_url=f"{server}/v1", api_key=key, max_retries=0)
    assert [m.id for m in client.models.list()] == [MODEL]
    chat = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=4,
                                          extra_body={"ignore_eos": True})
    assert chat.usage.completion_tokens == 4 and chat.choices[0].message.role == "assistant"
    text = ""
    stream = client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=6,
                                            stream=True, stream_options={"include_usage": True},
                                            extra_body={"ignore_eos": True})
    usage = None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        usage = chunk.usage or usage
    assert usage.completion_tokens == 6 and text
    completion = client.completions.create(model=MODEL, prompt="once", max_tokens=3, extra_body={"ignore_eos": True})
    assert completion.usage.completion_tokens == 3
    # vLLM leaves out a chunk whose token decodes to no text (the demo model's random tokens can): the
    # usage at the end counts them all.
    chunks = list(client.completions.create(model=MODEL, prompt="once", max_tokens=3, stream=True,
                                            stream_options={"include_usage": True}, extra_body={"ignore_eos": True}))
    assert chunks[-1].usage.completion_tokens == 3 and len(chunks) > 1
    # Errors map onto the client's exceptions, with our messages.
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{server}/v1", api_key="sk-glm-wrong", max_retries=0).models.list()
    with pytest.raises(openai.BadRequestError, match="max_tokens"):
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}], max_tokens=10**6)


def test_least_busy_engine_first_and_never_a_draining_one(server, key, engines):
    held = HeldStream(server, key)
    try:
        busy = next(name for name, n in ((e.name, routing.in_flight(e.name)) for e in engines) if n == 1)
        before = engine_counts()
        for _ in range(3):  # the other engine has nothing in flight: it gets each one
            assert httpx.post(f"{server}/v1/completions", headers=auth(key), timeout=60,
                              json={"model": MODEL, "prompt": "x", "max_tokens": 2}).status_code == 200
        idle = next(e.name for e in engines if e.name != busy)
        after = engine_counts()
        assert after.get(idle, 0) - before.get(idle, 0) == 3 and after.get(busy, 0) == before.get(busy, 0)

        # The idle engine starts draining (as the supervisor does: state, then the table): it gets nothing new,
        # even though the other is busier.
        Engine.objects.filter(name=idle).update(state=S.DRAINING)
        routing.publish()
        before = engine_counts()
        for _ in range(3):
            assert httpx.post(f"{server}/v1/completions", headers=auth(key), timeout=60,
                              json={"model": MODEL, "prompt": "x", "max_tokens": 2}).status_code == 200
        after = engine_counts()
        assert after.get(idle, 0) == before.get(idle, 0) and after[busy] - before.get(busy, 0) == 3
    finally:
        held.close()
        Engine.objects.filter(state=S.DRAINING).update(state=S.READY)
        routing.publish()


def test_connection_failure_before_the_first_byte_goes_to_another_engine(server, key, engines):
    # A ready engine row whose port has no listener, with fewer requests in flight than the real one:
    # it is chosen first, the connection is refused, the request goes to the other engine.
    Engine.objects.filter(name=engines[1].name).update(state=S.STOPPED)
    ghost = Engine.objects.create(name="gw-ghost", port=GHOST_PORT, model="/nowhere", served_model_name=MODEL)
    Engine.objects.filter(pk=ghost.pk).update(state=S.READY)
    routing.publish()
    held = HeldStream(server, key)
    try:
        assert routing.in_flight(engines[0].name) == 1
        before = engine_counts()
        answer = httpx.post(f"{server}/v1/completions", headers=auth(key), timeout=60,
                            json={"model": MODEL, "prompt": "x", "max_tokens": 2})
        assert answer.status_code == 200, answer.text
        assert engine_counts()[engines[0].name] - before.get(engines[0].name, 0) == 1
        assert routing.in_flight("gw-ghost") == 0
        # With no other engine to try, the failure is a clear 503.
        Engine.objects.filter(name=engines[0].name).update(state=S.DRAINING)
        routing.publish()
        refused = httpx.post(f"{server}/v1/completions", headers=auth(key), timeout=60,
                             json={"model": MODEL, "prompt": "x", "max_tokens": 2})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "upstream_unavailable"
    finally:
        held.close()
        Engine.objects.filter(pk=ghost.pk).delete()
        Engine.objects.filter(name__in=[e.name for e in engines]).update(state=S.READY)
        routing.publish()


def test_client_disconnect_aborts_the_upstream_request(server, key, engines):
    before = {e.name: engine_totals(e) for e in engines}
    held = HeldStream(server, key, leave=True)  # the client goes away at its first event
    assert held.error is None and held.events
    # The gateway closed its upstream connection: the engine aborts the generation.
    engine = wait_for(lambda: next((e for e in engines if engine_counts(499).get(e.name) == 1), None), 30,
                      "the request counted as closed by the client")
    wait_for(lambda: running(engine) == 0, 30, "the engine's request ended")
    prompts, tokens = (now - then for now, then in zip(engine_totals(engine), before[engine.name], strict=True))
    assert prompts > 0 and tokens < LONG["max_tokens"]  # the engine had it, and it was cut short
    wait_for(lambda: routing.in_flight(engine.name) == 0, 10, "the gateway's in-flight count released")


def test_red_alert_refuses_new_requests_while_a_stream_finishes(server, key):
    body = {"model": MODEL, "prompt": "hold", "stream": True, "temperature": 0, "max_tokens": 150, "ignore_eos": True,
            "stream_options": {"include_usage": True}}
    held = HeldStream(server, key, body, paused=False)
    try:
        simulate("red")
        refused = httpx.post(f"{server}/v1/completions", headers=auth(key), timeout=60,
                             json={"model": MODEL, "prompt": "x", "max_tokens": 2})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "requests_paused"
        held.thread.join(timeout=120)
        assert not held.thread.is_alive()
        assert held.error is None and held.status == 200
        assert held.events[-1] == "[DONE]" and json.loads(held.events[-2])["usage"]["completion_tokens"] == 150
    finally:
        simulate(None)
        held.close()


def test_concurrent_request_limit_of_a_key(server, engines):
    row = ApiKey(name="one-at-a-time", max_concurrent=1)
    plain = row.new_secret()
    row.save()
    held = HeldStream(server, plain)
    try:
        second = httpx.post(f"{server}/v1/completions", headers=auth(plain), timeout=60,
                            json={"model": MODEL, "prompt": "x", "max_tokens": 2})
        assert second.status_code == 429 and second.headers["retry-after"] == "1"
        assert second.json()["error"]["code"] == "concurrency_limit_exceeded"
    finally:
        held.close()
    wait_for(lambda: httpx.post(f"{server}/v1/completions", headers=auth(plain), timeout=60,
                                json={"model": MODEL, "prompt": "x", "max_tokens": 2}).status_code == 200,
             30, "the slot free again")


def test_rolling_restart_under_gateway_load_fails_no_request(server, key, engines):
    pids = {e.name: e.pid for e in engines}
    outcome = {"ok": 0, "failed": []}
    stop = threading.Event()

    def client():
        with httpx.Client(timeout=120) as http:
            while not stop.is_set():
                body = {"model": MODEL, "prompt": "load", "stream": True, "max_tokens": 24, "ignore_eos": True,
                        "stream_options": {"include_usage": True}}
                try:
                    with http.stream("POST", f"{server}/v1/completions", headers=auth(key), json=body) as r:
                        text = b"".join(r.iter_raw())
                    events = [e for e in text.split(b"\n\n") if e]
                    usage = json.loads(events[-2][6:]).get("usage") if len(events) > 1 else None
                    if (r.status_code != 200 or events[-1] != b"data: [DONE]" or not usage
                            or usage["completion_tokens"] != 24):
                        outcome["failed"].append(f"HTTP {r.status_code}: {text[-200:]!r}")
                    else:
                        outcome["ok"] += 1
                except httpx.HTTPError as exc:
                    outcome["failed"].append(repr(exc))

    threads = [threading.Thread(target=client) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        wait_for(lambda: outcome["ok"] >= 3, 60, "steady load")
        result = subprocess.run([sys.executable, "manage.py", "restart_engine", "--all", "--rolling",
                                 "--timeout", str(STARTUP)], cwd=ROOT, env=subprocess_env(), capture_output=True,
                                text=True, timeout=2 * STARTUP + 60)
        assert result.returncode == 0, result.stdout + result.stderr
        during = outcome["ok"]
        wait_for(lambda: outcome["ok"] >= during + 3, 60, "load after the restart")
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=120)
    assert outcome["failed"] == []
    for engine in engines:
        engine.refresh_from_db()
        assert engine.state == S.READY and engine.pid != pids[engine.name]
    assert outcome["ok"] > 10


def test_a_client_leaving_before_the_first_byte_aborts_the_engine_request(server, key, engines):
    # Not streamed: no byte comes back before the whole answer, so only the disconnect can end it early.
    before = {e.name: engine_totals(e) for e in engines}
    body = json.dumps({"model": MODEL, "prompt": "wait", **LONG}).encode()
    address = urlsplit(server)
    client = socket.create_connection((address.hostname, address.port))
    client.sendall(b"POST /v1/completions HTTP/1.1\r\nhost: gateway\r\ncontent-type: application/json\r\n"
                   b"authorization: Bearer %s\r\ncontent-length: %d\r\n\r\n%s" % (key.encode(), len(body), body))
    # The engine has the request once it has taken in its prompt; it then generates for seconds.
    engine = wait_for(lambda: next((e for e in engines if engine_totals(e)[0] > before[e.name][0]), None), 60,
                      "the engine taking the request")
    assert busy(key) == 1 and routing.in_flight(engine.name) == 1
    client.close()
    wait_for(lambda: engine_counts(499).get(engine.name) == 1, 30, "the request counted as closed by the client")
    wait_for(lambda: running(engine) == 0, 30, "the engine's request ended")
    assert engine_totals(engine)[1] - before[engine.name][1] < LONG["max_tokens"]  # cut short
    wait_for(lambda: busy(key) == 0 and routing.in_flight(engine.name) == 0, 10, "the slots released")


@pytest.fixture
def short_lease(monkeypatch):
    monkeypatch.setenv("GLMADMIN_GATEWAY_REQUEST_LEASE", "4")  # for the gateway process started after this


def test_a_killed_gateway_process_frees_its_slots_within_the_lease(short_lease, server, key, engines):
    held = HeldStream(server, key)
    try:
        engine = next(e for e in engines if routing.in_flight(e.name) == 1)
        assert busy(key) == 1
        port = urlsplit(server).port
        pid = next(c.pid for c in psutil.net_connections("tcp") if c.laddr.port == port and c.status == "LISTEN")
        os.kill(pid, signal.SIGKILL)  # no finally runs in it: nothing is released by the process itself
        started = time.monotonic()
        wait_for(lambda: busy(key) == 0 and routing.in_flight(engine.name) == 0, 30, "the slots expired")
        assert time.monotonic() - started < 4 + 2  # within the lease (and the polling)
    finally:
        held.close()


def test_a_kept_connection_the_engine_closed_is_sent_again(engines):
    from inference.gateway import upstream

    assert upstream.KEEPALIVE < 5  # vLLM's uvicorn closes an idle connection after 5 s
    engine = engines[0]
    body = json.dumps({"model": MODEL, "prompt": "x", "max_tokens": 2, "ignore_eos": True}).encode()

    def closed_by_engine(local_port: int) -> bool:
        return any(c.laddr.port == local_port and c.status == psutil.CONN_CLOSE_WAIT
                   for c in psutil.Process().net_connections("tcp"))

    async def scenario():
        pool = upstream.Pool(connect_timeout=5)
        first = await pool.post(engine.base_url, "/v1/completions", body)
        assert json.loads(await first.aread())["usage"]["completion_tokens"] == 2
        await first.aclose()
        [(address, [kept])] = pool.idle.items()
        # The engine's close must not be seen before the connection is taken again: as when the close
        # arrives just as a request takes it from the pool.
        kept.transport.pause_reading()
        local_port = kept.transport.get_extra_info("sockname")[1]
        deadline = time.monotonic() + 30
        while not closed_by_engine(local_port):
            assert time.monotonic() < deadline, "the engine kept the idle connection open"
            await asyncio.sleep(0.2)  # the pace of looking at the socket's state
        kept.idle_since = time.monotonic()
        kept.transport.resume_reading()
        second = await pool.post(engine.base_url, "/v1/completions", body)
        answer = json.loads(await second.aread())
        await second.aclose()
        pool.close()
        return answer, pool.resent

    answer, resent = async_to_sync(scenario)()
    assert answer["usage"]["completion_tokens"] == 2 and resent == 1
