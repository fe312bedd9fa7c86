"""Alert latency: disk crossing a threshold -> banner message in N open browsers.

Starts the real stack (uvicorn web, Celery worker and beat with the default
10 s check schedule, a private Redis, SQLite) on a scratch data directory,
mounts a small tmpfs as a watched filesystem, opens N authenticated websocket
clients, fills the tmpfs past the orange threshold and records when each client
receives the state with the orange incident. Repeated for each N.

Reports per N: p50/p99 from the crossing (file written) to receipt, p50/p99 of
the push alone (incident opened -> receipt), and the share of clients that got
it; ratios against the goal (check interval + 250 ms) and the field's 30 s
status-bar refresh. Needs root (mount). Usage:

    .venv/bin/python bench/alert_latency/run.py [--clients 1 100 1000] [--rounds 3]
"""

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import httpx
import uvloop
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import PY, ROOT, Scratch  # noqa: E402

CHECK_INTERVAL = 10.0  # the default schedule created by the migration
FIELD_REFRESH = 30.0


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The web, worker and beat processes of a scratch installation."""

    def __init__(self, scratch: Scratch):
        self.scratch = scratch
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(scratch.env, GLMADMIN_ADMIN_PASSWORD="bench-pass-1234")
        self.procs = []

    def spawn(self, name, *cmd):
        log = open(self.scratch.dir / f"{name}.log", "w")
        self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT))

    def start(self, volume: Path):
        from monitoring.models import WatchedFilesystem

        subprocess.run([PY, "manage.py", "ensure_admin"], cwd=ROOT, env=self.env, check=True, capture_output=True)
        # Orange at once: the bench measures crossing -> banner, not the "for" duration that holds a level back.
        WatchedFilesystem.objects.create(path=str(volume), label="bench", orange_for_seconds=0)
        self.spawn("web", PY, "-m", "uvicorn", "glmadmin.asgi:application", "--port", str(self.port), "--no-access-log",
                   "--log-level", "warning", *os.environ.get("BENCH_UVICORN_ARGS", "").split())
        self.spawn("worker", PY, "-m", "celery", "-A", "glmadmin", "worker", "--concurrency", "1",
                   "--loglevel", "WARNING")
        self.spawn("beat", PY, "-m", "celery", "-A", "glmadmin", "beat", "--loglevel", "WARNING")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/login/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)
        raise SystemExit(f"web server did not start; see logs in {self.scratch.dir}")

    def session_cookie(self) -> str:
        with httpx.Client(base_url=self.base) as client:
            client.get("/login/")
            client.post("/login/", data={"username": "admin", "password": "bench-pass-1234",
                                         "csrfmiddlewaretoken": client.cookies["csrftoken"]})
            return f"sessionid={client.cookies['sessionid']}"

    def stop(self):
        for proc in reversed(self.procs):
            proc.terminate()
        for proc in self.procs:
            proc.wait(timeout=20)
        self.scratch.close()


def fill(volume: Path, percent: float):
    st = os.statvfs(volume)
    total, used = st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize
    with open(volume / f"fill-{time.monotonic_ns()}", "wb") as fh:
        fh.write(b"\0" * max(0, int(total * percent / 100) - used))
        fh.flush()
        os.fsync(fh.fileno())


def empty(volume: Path):
    for f in volume.iterdir():
        f.unlink()


async def client(url, headers, ready, crossing, results, source):
    async with websockets.connect(url, additional_headers=headers, max_size=2**22, open_timeout=60) as ws:
        await ws.recv()  # the snapshot
        ready.release()
        await crossing.wait()
        while True:
            raw = await ws.recv()
            now = time.time()
            msg = json.loads(raw)
            hit = [i for i in msg["state"]["incidents"] if i["level"] == "orange" and source in i["title"]]
            if hit:
                results.append((now, datetime.fromisoformat(hit[0]["opened_at"]).timestamp(), msg["published_at"]))
                return


async def round_(stack, cookie, volume, n):
    url = stack.base.replace("http", "ws") + "/ws/live/"
    headers = {"Cookie": cookie, "Origin": stack.base}
    ready, crossing, results = asyncio.Semaphore(0), asyncio.Event(), []
    tasks = []
    for _ in range(n):  # connect in small batches, as pages would open
        tasks.append(asyncio.create_task(client(url, headers, ready, crossing, results, str(volume))))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0)
    for _ in range(n):
        await asyncio.wait_for(ready.acquire(), 120)
    t0 = time.time()
    fill(volume, 93)
    crossing.set()
    done, pending = await asyncio.wait(tasks, timeout=CHECK_INTERVAL + 15)
    for task in pending:
        task.cancel()
    empty(volume)
    return t0, results


def wait_resolved(volume):
    # The next checks resolve the incident; wait for it before the next round.
    from alerts.models import Incident

    deadline = time.monotonic() + 60
    while Incident.objects.open().filter(source=f"disk:{volume}").exists():
        if time.monotonic() > deadline:
            raise SystemExit("incident did not resolve")
        time.sleep(0.5)  # the checks run every 10 s; poll for their result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (8192, 8192))
    scratch = Scratch("alert-bench")
    volume = scratch.dir / "vol"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(volume)], check=True)
    stack = Stack(scratch)
    try:
        stack.start(volume)
        cookie = stack.session_cookie()
        print(f"check interval {CHECK_INTERVAL:.0f} s; goal p99 <= {CHECK_INTERVAL + 0.25:.2f} s; "
              f"field reference: {FIELD_REFRESH:.0f} s status-bar refresh")
        print(f"{'clients':>7} {'got':>6} {'cross p50':>9} {'cross p99':>9} {'push p50':>9} {'push p99':>9} "
              f"{'p99/goal':>8} {'p99/field':>9}")
        for n in args.clients:
            crossing_lat, push_lat, fanout_lat, got = [], [], [], 0
            for _ in range(args.rounds):
                t0, results = uvloop.run(round_(stack, cookie, volume, n))
                got += len(results)
                crossing_lat += [recv - t0 for recv, _, _ in results]
                push_lat += [recv - opened for recv, opened, _ in results]
                fanout_lat += [recv - published for recv, _, published in results]
                wait_resolved(volume)
            share = got / (n * args.rounds)
            p99 = pct(crossing_lat, 99) if crossing_lat else float("nan")
            print(f"{n:>7} {share:>6.1%} {pct(crossing_lat, 50):>8.2f}s {p99:>8.2f}s "
                  f"{pct(push_lat, 50) * 1000:>7.0f}ms {pct(push_lat, 99) * 1000:>7.0f}ms "
                  f"{p99 / (CHECK_INTERVAL + 0.25):>8.2f} {p99 / FIELD_REFRESH:>9.2f}", flush=True)
            print(f"        over {args.rounds} crossings; publish -> client p50 {pct(fanout_lat, 50) * 1000:.0f}ms "
                  f"p99 {pct(fanout_lat, 99) * 1000:.0f}ms", flush=True)
    finally:
        stack.stop()
        subprocess.run(["umount", "-l", str(volume)])


if __name__ == "__main__":
    main()
