"""A stand-in engine for the benchmark: answers /health, /metrics (a captured vLLM answer, its counters
growing as if it served traffic) and the supervisor's one-token probe. Usage: responder.py PORT METRICS_FILE"""

import json
import re
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

PORT, TEXT = int(sys.argv[1]), Path(sys.argv[2]).read_text()
STARTED = time.time()
COUNTER = re.compile(r"^(vllm:(?:generation_tokens_total|time_to_first_token_seconds_(?:bucket|count))\S*) (\S+)$",
                     re.M)


def metrics() -> bytes:
    # Counters grow with time (20 tokens and one request a second), so the sampler computes real windows.
    grown = int(time.time() - STARTED)
    return COUNTER.sub(lambda m: f"{m.group(1)} {float(m.group(2)) + grown * (20 if 'tokens' in m.group(1) else 1)}",
                       TEXT).encode()


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        self._answer(metrics() if self.path == "/metrics" else b"", "text/plain")

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(json.dumps({"choices": [{"text": "x"}], "usage": {"completion_tokens": 1}}).encode(),
                     "application/json")

    def _answer(self, body: bytes, content_type: str):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


ThreadingHTTPServer(("127.0.0.1", PORT), Handler).serve_forever()
