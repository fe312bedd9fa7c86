"""Alert latency: disk crossing a threshold -> banner message in N open pages.

Starts the real stack as scripts/run does (every Procfile process but Redis: uvicorn web, the Celery
worker, alerts and notify lanes, beat; a private Redis and SQLite on a scratch data directory), mounts a
64 MB tmpfs as a watched filesystem, opens N authenticated websocket clients (/ws/live/, as pages do),
fills the tmpfs past the orange threshold and records when each client receives the state with the
orange incident. Repeated for each N, and side by side in one run for each setting of the quick disk
checks (GLMADMIN_DISK_CHECK_SECONDS, the alerts worker restarted with it): 0.5 s (now), 1 s and 0 (off),
which leaves the full check by beat every 10 s: the checks as they were before issue 16.

Reports per setting and N: the share of clients that got it, p50/p99/max from the crossing (file
written) to receipt, p99 of the push alone (incident opened -> receipt) and of the fan-out (publish ->
receipt); ratios of the crossing p99 to the goal (1.5 s at 1,000 pages) and to the 10 s schedule's
p99 at the same N. Needs root (mount). Usage:

    .venv/bin/python bench/alert_latency/run.py [--clients 1 100 1000] [--rounds 5] [--quick 0.5 1 0]
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
from bench.common import ROOT, Scratch, restart_celery_worker, spawn_procfile  # noqa: E402

GOAL_P99 = 1.5  # seconds, crossing -> banner with 1,000 pages open (issue 16)
FULL_CHECK_EVERY = 10  # the beat schedule of the full check: with the quick checks off, the checks before issue 16
PASSWORD = "bench-pass-1234"


def pct(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q / 100 * (len(values) - 1))))]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Stack:
    """The Procfile's processes on a scratch installation."""

    def __init__(self, scratch: Scratch):
        self.scratch = scratch
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.env = dict(scratch.env, GLMADMIN_ADMIN_PASSWORD=PASSWORD, GLMADMIN_HOST="127.0.0.1",
                        GLMADMIN_PORT=str(self.port), GLMADMIN_HOST_NAME="local")
        self.procs = {}

    def start(self, volume: Path):
        from monitoring.models import WatchedFilesystem

        subprocess.run([sys.executable, "manage.py", "ensure_admin"], cwd=ROOT, env=self.env, check=True,
                       capture_output=True)
        # Orange at once: the bench measures crossing -> banner, not the "for" duration that holds a level back.
        WatchedFilesystem.objects.create(path=str(volume), label="bench", yellow_for_seconds=0, orange_for_seconds=0)
        self.procs = spawn_procfile(self.scratch, self.env)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                httpx.get(f"{self.base}/login/", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.2)  # the pace of polling a starting server
        raise SystemExit(f"web server did not start; see logs in {self.scratch.dir}")

    def session_cookie(self) -> str:
        with httpx.Client(base_url=self.base) as client:
            client.get("/login/")
            client.post("/login/", data={"username": "admin", "password": PASSWORD,
                                         "csrfmiddlewaretoken": client.cookies["csrftoken"]})
            return f"sessionid={client.cookies['sessionid']}"

    def restart_alerts(self, quick: float):
        """The alerts worker again, with the quick disk checks every `quick` seconds (0: off)."""
        restart_celery_worker(self.scratch, dict(self.env, GLMADMIN_DISK_CHECK_SECONDS=str(quick)), self.procs,
                              "alerts")

    def stop(self):
        for proc in reversed(list(self.procs.values())):
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.scratch.close()


def fill(volume: Path, percent: float):
    st = os.statvfs(volume)
    total, used = st.f_blocks * st.f_frsize, (st.f_blocks - st.f_bfree) * st.f_frsize
    with open(volume / f"fill-{time.monotonic_ns()}", "wb") as fh:
        fh.write(b"\0" * max(0, int(total * percent / 100) - used))


def empty(volume: Path):
    for f in volume.iterdir():
        f.unlink()


async def client(url, headers, ready, crossing, results, source):
    async with websockets.connect(url, additional_headers=headers, max_size=2**23, open_timeout=120) as ws:
        await ws.recv()  # the snapshot
        ready.release()
        await crossing.wait()
        while True:
            raw = await ws.recv()
            now = time.time()
            msg = json.loads(raw)
            if msg.get("type") != "state":
                continue
            hit = [i for i in msg["state"]["incidents"] if i["level"] == "orange" and source in i["title"]]
            if hit:
                results.append((now, datetime.fromisoformat(hit[0]["opened_at"]).timestamp(), msg["published_at"]))
                return


async def round_(stack, cookie, volume, n, every):
    url = stack.base.replace("http", "ws") + "/ws/live/"
    headers = {"Cookie": cookie, "Origin": stack.base}
    ready, crossing, results = asyncio.Semaphore(0), asyncio.Event(), []
    tasks = []
    for _ in range(n):  # connect in small batches, as pages would open
        tasks.append(asyncio.create_task(client(url, headers, ready, crossing, results, str(volume))))
        if len(tasks) % 50 == 0:
            await asyncio.sleep(0)
    for _ in range(n):
        await asyncio.wait_for(ready.acquire(), 180)
    t0 = time.time()
    fill(volume, 93)
    crossing.set()
    done, pending = await asyncio.wait(tasks, timeout=every + 15)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    empty(volume)
    return t0, results


def wait_resolved(volume):
    from alerts.models import Incident

    deadline = time.monotonic() + 60
    while Incident.objects.open().filter(source=f"disk:{volume}").exists():
        if time.monotonic() > deadline:
            raise SystemExit("incident did not resolve")
        time.sleep(0.1)  # the pace of polling the database for the next check's result


def measure(stack, cookie, volume, n, rounds, quick) -> dict:
    crossing_lat, push_lat, fanout_lat, got = [], [], [], 0
    for _ in range(rounds):
        t0, results = uvloop.run(round_(stack, cookie, volume, n, quick or FULL_CHECK_EVERY))
        got += len(results)
        crossing_lat += [recv - t0 for recv, _, _ in results]
        push_lat += [recv - opened for recv, opened, _ in results]
        fanout_lat += [recv - published for recv, _, published in results]
        wait_resolved(volume)
    nan = float("nan")
    return {
        "clients": n, "quick": quick, "delivered": got / (n * rounds),
        "cross_p50": pct(crossing_lat, 50) if got else nan, "cross_p99": pct(crossing_lat, 99) if got else nan,
        "cross_max": max(crossing_lat, default=nan),
        "push_p99_ms": pct(push_lat, 99) * 1000 if got else nan,
        "fanout_p99_ms": pct(fanout_lat, 99) * 1000 if got else nan,
        "load_1min": round(os.getloadavg()[0], 1),  # the machine is shared: what else ran meanwhile
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 100, 1000])
    parser.add_argument("--rounds", type=int, default=5, help="crossings per setting and N")
    parser.add_argument("--quick", type=float, nargs="+", default=[0.5, 1.0, 0.0],
                        help="GLMADMIN_DISK_CHECK_SECONDS settings to compare (0: off, the 10 s full check alone)")
    args = parser.parse_args()
    resource.setrlimit(resource.RLIMIT_NOFILE, (16384, 16384))
    scratch = Scratch("alert-bench")
    volume = scratch.dir / "vol"
    volume.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(volume)], check=True)
    stack = Stack(scratch)
    rows = []
    try:
        stack.start(volume)
        cookie = stack.session_cookie()
        for quick in args.quick:
            stack.restart_alerts(quick)
            for n in args.clients:
                row = measure(stack, cookie, volume, n, args.rounds, quick)
                rows.append(row)
                print(json.dumps(row), flush=True)
    finally:
        stack.stop()
        subprocess.run(["umount", "-l", str(volume)])
    reference = {r["clients"]: r["cross_p99"] for r in rows if not r["quick"]}
    print(f"\n{args.rounds} crossings per row; goal: cross p99 <= {GOAL_P99} s at 1000 pages, 100 % delivered; "
          f"reference: the quick checks off (the full check every {FULL_CHECK_EVERY} s alone), same run")
    print(f"{'checks':>12} {'clients':>7} {'got':>6} {'cross p50':>9} {'cross p99':>9} {'max':>6} {'push p99':>8} "
          f"{'fan-out p99':>11} {'p99/goal':>8} {'p99/ref':>8} {'load':>5}")
    for r in rows:
        ref = reference.get(r["clients"])
        versus = f"{r['cross_p99'] / ref:>8.2f}" if ref else f"{'-':>8}"
        checks = f"every {r['quick']:g} s" if r["quick"] else f"{FULL_CHECK_EVERY} s (ref)"
        print(f"{checks:>12} {r['clients']:>7} {r['delivered']:>6.1%} {r['cross_p50']:>8.2f}s "
              f"{r['cross_p99']:>8.2f}s {r['cross_max']:>5.2f}s {r['push_p99_ms']:>6.0f}ms "
              f"{r['fanout_p99_ms']:>9.0f}ms {r['cross_p99'] / GOAL_P99:>8.2f} {versus} {r['load_1min']:>5}")


if __name__ == "__main__":
    main()
