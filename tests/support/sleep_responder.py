"""A small HTTP responder that plays a vLLM engine's endpoints for the soft-restart protocol (issue 18 names
it as the one stand-in for vLLM there: the CPU build has no sleep mode).

Run as its own process, so that the supervisor finds it by pid like an engine and reads its command line
(`--enable-sleep-mode` there or not): python sleep_responder.py PORT [--enable-sleep-mode].

It answers /health, /metrics (vllm:num_requests_running as set), POST /sleep, /wake_up, /reset_prefix_cache
and /v1/completions, and records each call; the test reads the calls from GET /calls and sets the behaviour
with POST /control {"running": N, "wake": "ok" | "fail" | "hang", "reset": "ok" | "refuse" | "missing",
"ttft": {"0.1": n, ..., "+Inf": n}} (the time-to-first-token histogram, cumulative counts by bucket)
("refuse" answers {"success": false} as vLLM does while running requests hold cached blocks; "missing" is an
engine started without VLLM_SERVER_DEV_MODE).
"""

import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

state = {"running": 0, "wake": "ok", "reset": "ok", "ttft": {}, "calls": []}
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
            running, ttft = state["running"], dict(state["ttft"])
        if self.path == "/health":
            self.answer(200, "")
        elif self.path == "/metrics":
            lines = [f"vllm:num_requests_running {running}", "vllm:num_requests_waiting 0"]
            lines += [f'vllm:time_to_first_token_seconds_bucket{{le="{le}"}} {n}' for le, n in ttft.items()]
            if ttft:
                lines.append(f"vllm:time_to_first_token_seconds_count {ttft['+Inf']}")
            self.answer(200, "\n".join(lines) + "\n")
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
            wake, reset = state["wake"], state["reset"]
        if self.path == "/sleep?level=1":
            self.answer(200, "")
        elif self.path == "/wake_up":
            if wake == "hang":
                released.wait()
            self.answer(500 if wake == "fail" else 200, {"error": "CUDA error: out of memory"} if wake == "fail"
                        else "")
        elif self.path == "/reset_prefix_cache":
            if reset == "missing":
                self.answer(404, {"detail": "Not Found"})
            else:
                self.answer(200, {"success": reset == "ok"})
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
