"""The notify lane at rest: what starting its send processes on demand costs a send, and what it saves.

The Procfile starts the notify worker with `--autoscale 2,0`: no prefork child while nothing is sent (each
one holds ~75 MB of RSS), one forked for the first send, two while sends overlap, shrunk again after 30 s
without a send (Celery's AUTOSCALE_KEEPALIVE). The reference is the same worker with two children always up
(`--concurrency 2`, the Procfile before). Both are measured in one run, alternately, each round on a worker
started afresh: its RSS at rest (the worker and its children), then a channel test queued twice, one after
the other, timed from the queueing to the moment a local webhook receiver has it (the first send meets an
idle pool; the second a warm one).

    .venv/bin/python bench/notify_idle/run.py [--rounds 5]
"""

import argparse
import json
import statistics
import subprocess
import sys
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
RESULTS = ROOT / "bench" / "results"
ON_DEMAND, REFERENCE = "on demand (Procfile: --autoscale 2,0)", "reference (--concurrency 2)"


class Receiver(ThreadingHTTPServer):
    """A webhook receiver that notes when each request arrived."""

    def __init__(self):
        self.arrived: list[float] = []
        self.got = threading.Condition()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(handler):  # noqa: N802, N805 - http.server's names
                handler.rfile.read(int(handler.headers.get("content-length", 0)))
                handler.send_response(200)
                handler.end_headers()
                with self.got:
                    self.arrived.append(time.monotonic())
                    self.got.notify_all()

            def log_message(handler, *args):  # noqa: N805
                pass

        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def wait(self, count: int, timeout: float = 60) -> float:
        with self.got:
            if not self.got.wait_for(lambda: len(self.arrived) >= count, timeout):
                raise SystemExit("a send did not arrive within 60 s")
            return self.arrived[count - 1]


def rss_mb(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)]) / 2**20


def round_of(command: str, scratch, env: dict, channel, receiver: Receiver) -> dict:
    from alerts.notifications.planner import plan_channel_test
    from alerts.tasks import deliver_notification

    log = scratch.dir / "notify.log"
    seen = log.read_text().count(" ready.") if log.exists() else 0
    with open(log, "a") as out:
        worker = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=ROOT, env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while log.read_text().count(" ready.") <= seen:
            if time.monotonic() > deadline:
                raise SystemExit(f"the notify worker did not start; see {log}")
            time.sleep(0.2)  # the pace of polling a starting worker's log
        time.sleep(3)  # at rest: the pool has started what it starts
        rest = rss_mb(worker.pid)
        latencies = []
        for _ in range(2):
            queued = time.monotonic()
            deliver_notification.apply_async((plan_channel_test(channel).pk,))  # routed to the notify lane
            latencies.append(receiver.wait(len(receiver.arrived) + 1) - queued)
        return {"rss_at_rest_mb": round(rest, 1), "first_send_s": round(latencies[0], 3),
                "warm_send_s": round(latencies[1], 3)}
    finally:
        worker.terminate()
        worker.wait(60)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from bench.common import Scratch, procfile

    scratch = Scratch("bench-notify-idle")
    from tests.support.notify import webhook

    receiver = Receiver()
    channel = webhook(f"http://127.0.0.1:{receiver.server_address[1]}/hook")
    env = dict(scratch.env, GLMADMIN_HOST_NAME="local")
    command = procfile()["notify"]
    if "--autoscale 2,0" not in command:
        raise SystemExit("the Procfile's notify worker is not started with --autoscale 2,0")
    commands = {ON_DEMAND: command, REFERENCE: command.replace("--autoscale 2,0", "--concurrency 2")}
    rounds: dict[str, list[dict]] = {name: [] for name in commands}
    try:
        for _ in range(args.rounds):
            for name, line in commands.items():
                rounds[name].append(round_of(line, scratch, env, channel, receiver))
    finally:
        scratch.close()
    summary = {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for name, runs in rounds.items()}
    result = {
        "rounds": rounds, "medians": summary,
        "ratios (on demand / reference)": {key: round(summary[ON_DEMAND][key] / summary[REFERENCE][key], 2)
                                           for key in summary[ON_DEMAND]},
        "first send added (s, median)": round(summary[ON_DEMAND]["first_send_s"]
                                              - summary[REFERENCE]["first_send_s"], 3),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / f"notify-idle-{datetime.now().strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
