"""A small HTTP responder that plays a vLLM engine's endpoints for the soft-restart protocol (issue 18 names
it as the one stand-in for vLLM there: the CPU build has no sleep mode).

Run as its own process, so that the supervisor finds it by pid like an engine and reads its command line
(`--enable-sleep-mode` there or not): python sleep_responder.py PORT [--enable-sleep-mode].

It answers /health, /metrics (vllm:num_requests_running as set), POST /sleep, /wake_up and /v1/completions,
and records each call; the test reads the calls from GET /calls and sets the behaviour with POST /control
{"running": N, "wake": "ok" | "fail" | "hang"}.
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"running": 0, "wake": "ok", "calls": []}
lock = threading.Lock()
released = threading.Event()  # a hanging wake-up ends when the responder stops


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def answer(self, status: int, body) -> None:
        data = (body if isinstance(body, str) else json.dumps(body)).encode()
        self.send_response(status)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/calls":
            with lock:
                self.answer(200, state["calls"])
            return
        with lock:
            state["calls"].append(f"GET {self.path} running={state['running']}")
            running = state["running"]
        if self.path == "/health":
            self.answer(200, "")
        elif self.path == "/metrics":
            self.answer(200, f"vllm:num_requests_running {running}\nvllm:num_requests_waiting 0\n")
        else:
            self.answer(404, {"error": "not found"})

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/control":
            with lock:
                state.update(json.loads(body))
            self.answer(200, {})
            return
        with lock:
            state["calls"].append(f"POST {self.path}")
            wake = state["wake"]
        if self.path == "/sleep?level=1":
            self.answer(200, "")
        elif self.path == "/wake_up":
            if wake == "hang":
                released.wait()
            self.answer(500 if wake == "fail" else 200, {"error": "CUDA error: out of memory"} if wake == "fail"
                        else "")
        elif self.path == "/v1/completions":
            self.answer(200, {"choices": [{"text": "pong", "index": 0}]})
        else:
            self.answer(404, {"error": "not found"})


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Handler)
    server.daemon_threads = True
    try:
        server.serve_forever()
    finally:
        released.set()
