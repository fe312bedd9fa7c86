"""An engine that answers with broken HTTP framing, bytes it never announced, or silence: the client gets a
clean error (OpenAI's error shape, or a well-formed SSE error event mid-stream), the gateway drops that
connection (the next request comes on a new one), and silences end at the gateway's timeouts.

The engine is a raw-socket server in this test, behind the real gateway (uvicorn) as a ready engine row.
"""

import json
import queue
import re
import socket
import threading

import httpx
import pytest

from inference.gateway import routing
from inference.models import Engine
from tests.inference.gateway.test_admission import error_of, make_key
from tests.support.processes import subprocess_env, uvicorn, wait_for

pytestmark = pytest.mark.django_db(transaction=True)

MODEL = "raw"
HANG = object()  # in an answer: send nothing more, wait for the gateway to close the connection
TEXT = b'{"choices": [{"index": 0, "text": "fine", "finish_reason": "length"}]}'
GOOD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(TEXT), TEXT)
CHUNKED = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
SSE = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
EVENT = b'data: {"choices": [{"index": 0, "text": "a", "finish_reason": null}]}\n\n'


def chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


class RawEngine:
    """Answers each request with the next answer queued (a list of byte strings to send, HANG, or a
    threading.Event to wait for), and records which connection each request came on and which
    connections the gateway closed."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.answers: queue.Queue = queue.Queue()
        self.lock = threading.Lock()
        self.requests: list[int] = []  # the connection number of each request, in arrival order
        self.connections = 0
        self.closed: set[int] = set()  # connections the gateway closed (or broke off)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # the listener was closed
            with self.lock:
                number, self.connections = self.connections, self.connections + 1
            threading.Thread(target=self._serve, args=(conn, number), daemon=True).start()

    def _serve(self, conn: socket.socket, number: int):
        buffer = b""
        try:
            while True:
                while b"\r\n\r\n" not in buffer:
                    buffer += self._recv(conn)
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                length = int(re.search(rb"(?im)^content-length: *(\d+)", head).group(1))
                while len(buffer) < length:
                    buffer += self._recv(conn)
                buffer = buffer[length:]
                with self.lock:
                    self.requests.append(number)
                for part in self.answers.get(timeout=60):
                    if part is HANG:
                        while True:
                            self._recv(conn)
                    elif isinstance(part, threading.Event):
                        assert part.wait(60)
                    else:
                        conn.sendall(part)
        except (OSError, EOFError):
            pass  # the gateway closed the connection (or aborted it: a reset)
        finally:
            with self.lock:
                self.closed.add(number)
            conn.close()

    @staticmethod
    def _recv(conn: socket.socket) -> bytes:
        data = conn.recv(65536)
        if not data:
            raise EOFError
        return data

    def close(self):
        self.listener.close()


@pytest.fixture
def raw_engine(transactional_db):
    raw = RawEngine()
    Engine.objects.create(name="raw", port=raw.port, model="/nowhere", served_model_name=MODEL)
    Engine.objects.filter(name="raw").update(state="ready")  # no supervisor runs it: marked ready by hand
    routing.publish()
    yield raw
    raw.close()


@pytest.fixture
def impatient_server(transactional_db, tmp_path):
    """The gateway with short upstream timeouts (the defaults are minutes)."""
    env = {**subprocess_env(), "GLMADMIN_GATEWAY_UPSTREAM_FIRST_BYTE_TIMEOUT": "3",
           "GLMADMIN_GATEWAY_UPSTREAM_IDLE_TIMEOUT": "3"}
    log = tmp_path / "uvicorn.log"
    with uvicorn(log, env) as (base, _):
        yield base
    print(f"uvicorn's output:\n{log.read_text()[-4000:]}")


def ask(server, plain, stream=False) -> httpx.Response:
    # The client's own timeout is far above the gateway's (3 s in the timeout test): a gateway without
    # timeouts makes this fail, not the test hang.
    return httpx.post(f"{server}/v1/completions", headers={"Authorization": f"Bearer {plain}"}, timeout=90,
                      json={"model": MODEL, "prompt": "hi", "max_tokens": 5, "stream": stream})


def answered(raw: RawEngine, answer: list, server, plain, stream=False) -> tuple[httpx.Response, int]:
    """The gateway's answer to one request the raw engine answers with `answer`, and the connection it came on."""
    raw.answers.put(answer)
    before = len(raw.requests)
    response = ask(server, plain, stream)
    assert len(raw.requests) == before + 1, "the request did not reach the engine exactly once"
    return response, raw.requests[-1]


def dropped(raw: RawEngine, connection: int, server, plain, what: str):
    """The gateway closed that connection, and the next request comes on a new one."""
    wait_for(lambda: connection in raw.closed, 30, f"the gateway closing the connection after {what}")
    response, then = answered(raw, [GOOD], server, plain)
    assert response.status_code == 200 and response.json()["choices"][0]["text"] == "fine", response.text
    assert then != connection, f"the connection was reused after {what}"


def sse_events(body: bytes) -> list[bytes]:
    """The data of each event, checking that the body is whole events only (each ended by a blank line)."""
    *events, rest = body.split(b"\n\n")
    assert rest == b"", f"the stream does not end with a whole event: {body!r}"
    for event in events:
        assert event.startswith(b"data: ") and b"\n" not in event, f"not a well-formed data event: {event!r}"
    return [event[6:] for event in events]


BROKEN = {
    "chunk size 0x5": CHUNKED + b"0x5\r\nhello\r\n0\r\n\r\n",
    "chunk size +5": CHUNKED + b"+5\r\nhello\r\n0\r\n\r\n",
    "chunk size 5_0": CHUNKED + b"5_0\r\n" + b"x" * 80 + b"\r\n0\r\n\r\n",
    "a chunk size past 64 bits": CHUNKED + b"1" * 40 + b"\r\nhello\r\n0\r\n\r\n",
    "a duplicate content-length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 5\r\n\r\nhello",
    "conflicting content-lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\ncontent-length: 8\r\n\r\nhello!!!",
    "content-length with chunked": b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\ntransfer-encoding: chunked\r\n\r\n"
                                   b"5\r\nhello\r\n0\r\n\r\n",
    # An answer of 5 bytes, then a second answer nobody asked for: taken for the next request's if kept.
    "bytes beyond content-length": b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"
                                   b"HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged",
}


def test_broken_framing_is_a_clean_502_and_the_connection_is_dropped(server, raw_engine):
    _, plain = make_key()
    for what, answer in BROKEN.items():
        # The previous request's kept connection serves this one (unless it has expired meanwhile).
        response, connection = answered(raw_engine, [answer], server, plain)
        assert response.status_code == 502, f"{what}: {response.status_code} {response.text}"
        error = error_of(response)
        assert (error["type"], error["code"]) == ("server_error", "upstream_malformed"), (what, error)
        dropped(raw_engine, connection, server, plain, what)
    # A whole answer, and after the client has it, bytes the engine never announced.
    later = threading.Event()
    response, connection = answered(raw_engine, [GOOD, later, b"HTTP/1.1 200 OK\r\n"], server, plain)
    assert response.status_code == 200
    later.set()
    dropped(raw_engine, connection, server, plain, "bytes after a whole answer")


BROKEN_MID_STREAM = {
    "a chunk size 0x5": b"0x5\r\nhello\r\n0\r\n\r\n",
    "half an event, then broken framing": chunk(b'data: {"choices": [{"index": 0, "te') + b"zz\r\n",
}


def test_broken_framing_mid_stream_ends_with_a_well_formed_error_event(server, raw_engine):
    _, plain = make_key()
    for what, rest in BROKEN_MID_STREAM.items():
        response, connection = answered(raw_engine, [SSE + chunk(EVENT), rest], server, plain, stream=True)
        assert response.status_code == 200
        first, error = sse_events(response.content)
        assert first == EVENT[6:-2], what  # the whole event before the fault went out; half of one never does
        assert json.loads(error)["error"]["code"] == "upstream_malformed", what
        dropped(raw_engine, connection, server, plain, what)


def test_an_engine_that_goes_silent_is_cut_off_by_the_timeouts(impatient_server, raw_engine):
    _, plain = make_key()
    # Silent before the first byte: a 504 in OpenAI's shape.
    response, silent = answered(raw_engine, [HANG], impatient_server, plain)
    assert response.status_code == 504, response.text
    error = error_of(response)
    assert (error["type"], error["code"]) == ("server_error", "upstream_timeout") and "3 s" in error["message"]
    wait_for(lambda: silent in raw_engine.closed, 30, "the gateway closing the silent connection")
    # Silent after the first event: the event, then an error event.
    response, stalled = answered(raw_engine, [SSE + chunk(EVENT), HANG], impatient_server, plain, stream=True)
    assert stalled != silent, "the connection was reused after a timeout"
    assert response.status_code == 200
    first, error = sse_events(response.content)
    assert first == EVENT[6:-2] and json.loads(error)["error"]["code"] == "upstream_timeout"
    wait_for(lambda: stalled in raw_engine.closed, 30, "the gateway closing the stalled connection")
    raw_engine.answers.put([GOOD])
    ask(impatient_server, plain)  # its answer is not the point (a loaded machine may stall it past 3 s)
    assert raw_engine.requests[-1] not in (silent, stalled), "the connection was reused after a timeout"
