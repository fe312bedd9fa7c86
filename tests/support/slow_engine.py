"""A stand-in for the engine runtime's python that loads its model as slowly as the test says.

The supervisor starts it as it starts vLLM (`<python> -m vllm.entrypoints.openai.api_server --model DIR
--port N ...`, see engine_runtime()). Like vLLM it binds its port at once, before the model loads; until a
file named `loaded` appears in DIR it is loading (/health and the probe answer 503), then it answers like
tests/support/sleep_responder.py. Each start appends its pid to DIR/starts, so a test counts starts; SIGTERM
ends it, as it ends vLLM once drained.
"""

import os
import sys
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
            super().do_POST()


if __name__ == "__main__":
    with (model / "starts").open("a") as starts:
        starts.write(f"{os.getpid()}\n")
    server = ThreadingHTTPServer(("127.0.0.1", port), Loading)
    server.daemon_threads = True
    server.serve_forever()
