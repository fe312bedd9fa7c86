"""A stand-in for the engine runtime's python that loads its model as slowly as the test says.

The supervisor starts it as it starts vLLM (`<python> -m vllm.entrypoints.openai.api_server --model DIR
--port N ...`, see engine_runtime()). Like vLLM it binds its port at once, before the model loads; until a
file named `loaded` appears in DIR it is loading (/health and the probe answer 503), then it answers like
tests/support/sleep_responder.py. Each start appends its pid to DIR/starts, so a test counts starts; SIGTERM
ends it, as it ends vLLM once drained.

Load, as the liveness probe meets it, is set through POST /control as well: {"probe_delay": seconds} answers
each /v1/completions that much later (an engine too busy to answer the probe in time), {"generating": n} adds
n to vllm:generation_tokens_total at each /metrics read (tokens flowing).
"""

import os
import sys
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
import sleep_responder  # noqa: E402 - the sibling script, not a package

args = sys.argv[1:]
model = Path(args[args.index("--model") + 1])
port = int(args[args.index("--port") + 1])


class Loading(sleep_responder.Handler):
    def loading(self) -> bool:
        if (model / "loaded").exists():
            return False
        self.answer(503, {"error": "loading the model"})
        return True

    def do_GET(self):
        if self.path == "/calls" or not self.loading():
            super().do_GET()

    def do_POST(self):
        if self.path == "/control" or not self.loading():
            if self.path == "/v1/completions":
                with sleep_responder.lock:
                    delay = sleep_responder.state.get("probe_delay", 0)
                time.sleep(delay)  # the load the test sets: the answer comes this late
            super().do_POST()

    def answer(self, status: int, body) -> None:
        if self.path == "/metrics" and status == 200:
            with sleep_responder.lock:
                state = sleep_responder.state
                state["tokens"] = state.get("tokens", 0) + state.get("generating", 0)
                body += f"vllm:generation_tokens_total {state['tokens']}\n"
        super().answer(status, body)


if __name__ == "__main__":
    with (model / "starts").open("a") as starts:
        starts.write(f"{os.getpid()}\n")
    server = ThreadingHTTPServer(("127.0.0.1", port), Loading)
    server.daemon_threads = True
    server.serve_forever()
