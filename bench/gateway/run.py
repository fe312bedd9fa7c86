"""What the gateway adds: time to first token and throughput, through it vs. straight to vLLM.

In one run, on a scratch glmadmin with one real vLLM engine (CPU build, demo model):

  (A) the reference: C concurrent streaming clients straight to the engine;
  (B) the same load through the gateway (uvicorn, one process) with an API key;

for C in 1, 16 and 64, alternating A and B round by round so drift hits both.
Each client streams completions of a fixed max_tokens back to back. Reports
added TTFT p50/p99 (B - A) and the throughput ratio B / A (tokens/s).

Then the gateway's own capacity: SSE chunks/s through one gateway process from
a fast synthetic upstream (bench/gateway/synthetic.py), against the same
client reading the synthetic upstream directly.

    .venv/bin/python bench/gateway/run.py [--rounds 3] [--seconds 8] [--max-tokens 32] [--model DIR]
                                          [--only paced|capacity] [--clients N] [--old REV] [--no-litellm]
                                          [--endpoint chat|completions]

--only paced skips the engine: the paced synthetic upstream alone (what a small machine can measure).
A request that fails is counted (failed, per path), not fatal to the run.

Peers, in the paced part, measured in the same run and taking turns with the direct path round by round:
  * the LiteLLM proxy (on unless --no-litellm): a pinned version in its own scratch virtualenv
    (bench/gateway/litellm_peer.py), one worker, no database, in front of the same paced upstream;
  * glmadmin at an older commit (--old REV, e.g. the commit before a gateway change): that tree from
    `git archive`, with its own scratch database and Redis, as its own uvicorn process.
The paced part speaks chat completions on every path (--endpoint chat, the default; LiteLLM parses the
events, so they must be the chat format); --endpoint completions as before. For each gateway it reports
added TTFT p50/p99 against the direct path, tokens/s as a ratio of the direct path's (median of the
rounds' ratios), the gateway process's CPU seconds per request and its resident memory (process tree).
A token is an event with non-empty text; TTFT is the time to the first one.
The C streams are spread over client processes (--clients N; by default one per 16 streams, at most one
fewer than the cores), so that the client is not what saturates at 64 streams.

On a machine with an NVIDIA GPU the engine runs on GPU 0 (scripts/gpu_check/README.md says how it was
run on the lent H100).
"""

import argparse
import asyncio
import json
import math
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime
from pathlib import Path
from urllib.parse import urlsplit

import httptools
import httpx
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import PY, ROOT, Scratch, wait_http  # noqa: E402

ENGINE_PORT = 8143
RESULTS = ROOT / "bench" / "results"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


# An event's text, completions or chat format, when not empty: one per token from the synthetic upstream,
# whichever gateway re-wrote the event (LiteLLM re-serialises each one, with other spacing and fields).
TOKEN = re.compile(rb'"(?:text|content)": ?"[^"]')


class _Answer:
    """httptools' callbacks for one streamed answer: tokens counted as the body arrives."""

    __slots__ = ("started", "first", "tokens", "done", "sample")

    def __init__(self, started):
        self.started, self.first, self.tokens, self.done, self.sample = started, None, 0, False, b""

    def on_body(self, body: bytes):
        found = len(TOKEN.findall(body))
        if found and self.first is None:
            self.first = time.perf_counter() - self.started
        self.tokens += found
        if not self.tokens and len(self.sample) < 200:
            self.sample += body[:200]

    def on_message_complete(self):
        self.done = True


class Connection:
    """One stream's keep-alive HTTP/1.1 connection, answers parsed by httptools (llhttp, in C) as uvicorn
    parses requests: a small fraction of httpx's CPU per streamed chunk, so that at 64 streams on a small
    machine the client is not what limits the direct path (with httpx it was: the direct path, many small
    reads, came out slower than the gateways, which coalesce events into fewer writes)."""

    def __init__(self, url: str, headers: dict, body: dict):
        parts = urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        payload = json.dumps(body).encode()
        head = [f"POST {parts.path} HTTP/1.1", f"host: {parts.netloc}", "content-type: application/json",
                f"content-length: {len(payload)}", *(f"{k}: {v}" for k, v in headers.items())]
        self.request = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
        self.reader = self.writer = None

    async def stream(self) -> tuple[float, int]:
        """(time to the first token, tokens) of one streamed answer."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        answer = _Answer(time.perf_counter())
        parser = httptools.HttpResponseParser(answer)
        self.writer.write(self.request)
        try:
            while not answer.done:
                data = await asyncio.wait_for(self.reader.read(1 << 16), 120)
                if not data:
                    raise ConnectionError("closed before the answer's end")
                parser.feed_data(data)
        except BaseException:
            self.close()  # a connection in an unknown state is not used again
            raise
        if not parser.should_keep_alive():
            self.close()
        if parser.get_status_code() != 200:
            raise RuntimeError(f"HTTP {parser.get_status_code()}: {answer.sample!r}")
        if answer.first is None:
            raise RuntimeError(f"an answer without any token: {answer.sample!r}")
        return answer.first, answer.tokens

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.reader = self.writer = None


async def _stream_for(url, headers, body, clients, start_at, seconds):
    """One client process' share: `clients` streams back to back from start_at (a shared wall-clock
    instant, so every process's streams overlap) for `seconds`. A failed request is counted and the
    client goes on: one broken connection must not end a whole run."""
    ttfts, counts, failures = [], [], []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    deadline = time.perf_counter() + seconds

    async def client():
        connection = Connection(url, headers, body)
        while time.perf_counter() < deadline:
            try:
                first, tokens = await connection.stream()
            except (OSError, RuntimeError, TimeoutError, httptools.HttpParserError) as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            else:
                ttfts.append(first)
                counts.append(tokens)
        connection.close()

    await asyncio.gather(*(client() for _ in range(clients)))
    return ttfts, sum(counts), time.time(), failures


def _part(url, headers, body, clients, start_at, seconds):
    try:
        import uvloop  # the client's own event loop costs less on uvloop too
    except ImportError:
        return asyncio.run(_stream_for(url, headers, body, clients, start_at, seconds))
    return uvloop.run(_stream_for(url, headers, body, clients, start_at, seconds))


class Clients:
    """The load generator: C concurrent streams spread over client processes, so that at 64 streams the
    client (Python, one core a process) is not what saturates. The processes are started once and reused."""

    def __init__(self, processes: int | None):
        self.fixed = processes
        self.pool, self.size = None, 0

    def processes(self, clients: int) -> int:
        """--clients when given, else one process per 16 streams, leaving a core to the rest."""
        cores = os.cpu_count() or 1
        wanted = self.fixed or min(cores - 1, math.ceil(clients / 16))
        return max(1, min(wanted, clients))

    def load(self, url, headers, body, clients, seconds, failures=None):
        """(TTFTs, tokens/s) of `clients` streams for `seconds`; failures, when given, gets the failed ones."""
        n = self.processes(clients)
        if self.size < n:
            self.close()
            # spawn, not fork: the parent holds Django, a database connection and Redis clients.
            self.pool, self.size = ProcessPoolExecutor(n, mp_context=multiprocessing.get_context("spawn")), n
        # Started a moment ahead: every process is waiting when the clock reaches it.
        start_at = time.time() + 0.3
        shares = [clients // n + (i < clients % n) for i in range(n)]
        parts = [self.pool.submit(_part, url, headers, body, share, start_at, seconds) for share in shares]
        ttfts, tokens, ended = [], 0, start_at
        for part in parts:
            part_ttfts, part_tokens, part_ended, part_failures = part.result()
            ttfts += part_ttfts
            tokens += part_tokens
            ended = max(ended, part_ended)
            if failures is not None:
                failures += part_failures
        return ttfts, tokens / (ended - start_at)

    def close(self):
        if self.pool is not None:
            self.pool.shutdown()
            self.pool, self.size = None, 0


def server_flags() -> list[str]:
    """uvicorn's loop and HTTP parser as the Procfile runs them (uvloop, httptools). Where one is not
    installed, uvicorn's fallback (asyncio, h11) is named and said: h11, pure Python, costs the gateway
    about 0.1 ms a request and more per streamed chunk, so such numbers are not the production path's."""
    import importlib.util

    flags = []
    for option, fast, fallback in (("--loop", "uvloop", "asyncio"), ("--http", "httptools", "h11")):
        found = importlib.util.find_spec(fast) is not None
        flags += [option, fast if found else fallback]
        if not found:
            print(f"note: {fast} is not installed; the gateway runs on {fallback} (not the production path)",
                  flush=True)
    return flags


def start_gateway(env, port, flags, cwd=ROOT):
    proc = subprocess.Popen([PY, "-m", "uvicorn", "glmadmin.asgi:application", "--port", str(port),
                             "--no-access-log", "--log-level", "warning", *flags], cwd=cwd, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1)
            return proc
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the gateway did not start")


class Process:
    """A gateway's process tree (LiteLLM's worker may be a child of its command): CPU seconds and RSS."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)

    def _tree(self):
        return [self.root, *self.root.children(recursive=True)]

    def cpu_s(self) -> float:
        return sum(sum(p.cpu_times()[:2]) for p in self._tree())

    def rss_mib(self) -> float:
        return sum(p.memory_info().rss for p in self._tree()) / 2**20


def median(values):
    return statistics.median(values) if values else float("nan")


def compare(args, paths, body):
    """paths: [(name, url, headers, pid or None)], the first the direct reference. Rounds alternate the
    paths (each round starts one later in the list), so drift and other load hit all of them alike."""
    load = args.load.load
    (reference, *_), rows = paths[0], []
    for clients in (1, 16, 64):
        ttfts = {name: [] for name, *_ in paths}
        rates = {name: [] for name, *_ in paths}
        cpu = {name: [] for name, *_ in paths}
        failed = {name: [] for name, *_ in paths}
        rss = {name: 0.0 for name, *_ in paths}
        loads = []
        for _name, url, hdrs, _ in paths:  # warm up every path (and the client processes)
            load(url, hdrs, body, clients, 2)
        gauges = {name: Process(pid) for name, _, _, pid in paths if pid}
        idle = {name: [0.0, 0.0] for name in gauges}  # CPU seconds, seconds while other paths ran
        for round_ in range(args.rounds):
            loads.append(os.getloadavg()[0])
            shift = round_ % len(paths)
            for name, url, hdrs, _ in paths[shift:] + paths[:shift]:
                before, started = {other: gauge.cpu_s() for other, gauge in gauges.items()}, time.monotonic()
                round_ttfts, rate = load(url, hdrs, body, clients, args.seconds, failed[name])
                elapsed = time.monotonic() - started
                for other, gauge in gauges.items():
                    spent = gauge.cpu_s() - before[other]
                    if other == name:
                        cpu[name].append(spent / max(1, len(round_ttfts)))
                        rss[name] = max(rss[name], gauge.rss_mib())
                    else:
                        idle[other][0] += spent
                        idle[other][1] += elapsed
                ttfts[name].extend(round_ttfts)
                rates[name].append(rate)
        for name, errors in failed.items():
            if errors:
                print(f"    {len(errors)} {name} request(s) failed, e.g. {errors[0]}", flush=True)
        row = {"clients": clients, "client_processes": args.load.processes(clients),
               "load_1min_at_rounds": loads, "paths": {}}
        for name, *_ in paths:
            path = {"requests": len(ttfts[name]), "failed": len(failed[name]),
                    "ttft_p50_ms": percentile(ttfts[name], 0.5) * 1000,
                    "ttft_p99_ms": percentile(ttfts[name], 0.99) * 1000,
                    "tokens_per_s_rounds": rates[name], "tokens_per_s": median(rates[name])}
            if name != reference:
                direct = row["paths"][reference]
                path["added_ttft_p50_ms"] = path["ttft_p50_ms"] - direct["ttft_p50_ms"]
                path["added_ttft_p99_ms"] = path["ttft_p99_ms"] - direct["ttft_p99_ms"]
                path["throughput_ratio"] = median([b / a if a else float("nan")
                                                   for a, b in zip(rates[reference], rates[name], strict=True)])
                path["cpu_ms_per_request"] = median(cpu[name]) * 1000
                path["rss_mib"] = rss[name]
                # What the process spends with no request of its own (timers, polling): part of the figure
                # above, most visible at 1 stream, where few requests share it.
                path["idle_cpu_ms_per_s"] = idle[name][0] / idle[name][1] * 1000 if idle[name][1] else float("nan")
            row["paths"][name] = path
        rows.append(row)
        direct = row["paths"][reference]
        print(f"{clients:>3} streams (load {min(loads):.1f}-{max(loads):.1f}): direct TTFT p50 "
              f"{direct['ttft_p50_ms']:.1f} ms, p99 {direct['ttft_p99_ms']:.1f} ms, {direct['tokens_per_s']:.0f} "
              f"tokens/s ({direct['requests']} requests)", flush=True)
        for name, path in row["paths"].items():
            if name != reference:
                print(f"    {name:>13}: added TTFT p50 {path['added_ttft_p50_ms']:+.2f} ms, p99 "
                      f"{path['added_ttft_p99_ms']:+.2f} ms; tokens/s ratio {path['throughput_ratio']:.3f}; "
                      f"CPU {path['cpu_ms_per_request']:.2f} ms/request (idle {path['idle_cpu_ms_per_s']:.1f} ms/s); "
                      f"RSS {path['rss_mib']:.0f} MiB "
                      f"({path['requests']} requests, {path['failed']} failed)", flush=True)
    return rows


def completion_body(model, max_tokens, endpoint):
    """The request every path gets: ignore_eos where the upstream is a real engine (completions)."""
    if endpoint == "chat":
        return {"model": model, "messages": [{"role": "user", "content": "hello"}], "max_tokens": max_tokens,
                "stream": True, "temperature": 0}
    return {"model": model, "prompt": "hello", "max_tokens": max_tokens, "stream": True, "ignore_eos": True,
            "temperature": 0}


# Run in an older glmadmin tree (cwd): its own scratch database gets a key and the paced engine, ready.
OLD_SETUP = """
import sys
import django
django.setup()
import inference
from inference.gateway import routing
from inference.models import ApiKey, Engine
assert inference.__file__.startswith(sys.argv[3]), inference.__file__  # that tree's code, not this one's
key = ApiKey(name="bench", requests_per_minute=10**6, max_concurrent=10**4)
plain = key.new_secret()
key.save()
Engine.objects.create(name="paced", port=int(sys.argv[1]), model=sys.argv[2], served_model_name=sys.argv[2])
Engine.objects.filter(name="paced").update(state="ready")
routing.publish()
print(plain)
"""


class OldGateway:
    """glmadmin's gateway at an older commit: that tree (git archive) in a temp dir, its own SQLite and
    Redis (the Redis layout changes between versions), its own uvicorn process on the same flags."""

    def __init__(self, rev, upstream_port, model, flags):
        if Path(rev).is_dir():  # a tree extracted beforehand (a machine without this repository's history)
            self.tree, self.commit = Path(rev).resolve(), Path(rev).name
        else:
            self.tree = Path(tempfile.mkdtemp(prefix="gateway-old-"))
            subprocess.run(f"git -C {ROOT} archive {rev} | tar -x -C {self.tree}", shell=True, check=True)
            self.commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", rev], check=True,
                                         capture_output=True, text=True).stdout.strip()
        data = Path(tempfile.mkdtemp(prefix="gateway-old-data-"))
        self.env = dict(os.environ, GLMADMIN_DATA_DIR=str(data), REDIS_URL=f"unix://{data}/redis.sock")
        self.redis = subprocess.Popen(["redis-server", "--port", "0", "--unixsocket", f"{data}/redis.sock",
                                       "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
        self.proc = None
        for _ in range(100):
            if (data / "redis.sock").exists():
                break
            time.sleep(0.1)
        subprocess.run([PY, "manage.py", "migrate", "--noinput"], cwd=self.tree, env=self.env, check=True,
                       capture_output=True)
        setup = subprocess.run([PY, "-c", OLD_SETUP, str(upstream_port), model, str(self.tree)], cwd=self.tree,
                               env=self.env, check=True, capture_output=True, text=True)
        self.headers = {"Authorization": f"Bearer {setup.stdout.split()[-1]}"}
        self.port = free_port()
        self.proc = start_gateway(self.env, self.port, flags, cwd=self.tree)

    def close(self):
        if self.proc is not None:
            self.proc.terminate()
        self.redis.terminate()


def paced(args, gateway, gateway_port, headers):
    """The same comparison against a synthetic upstream paced like an engine (no engine competing for
    the CPU), with the peers beside glmadmin's gateway."""
    from inference.gateway import routing
    from inference.models import Engine

    port = free_port()
    upstream = subprocess.Popen([PY, str(Path(__file__).with_name("synthetic.py")), str(port), "20", "5"])
    old = litellm = None
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30)
        # No supervisor runs here (nothing would start it): marked ready by hand.
        Engine.objects.create(name="paced", port=port, model="paced", served_model_name="paced")
        Engine.objects.filter(name="paced").update(state="ready")
        routing.publish()
        endpoint = "/v1/chat/completions" if args.endpoint == "chat" else "/v1/completions"
        paths = [("direct", f"http://127.0.0.1:{port}{endpoint}", {}, None),
                 ("glmadmin", f"http://127.0.0.1:{gateway_port}{endpoint}", headers, gateway.pid)]
        if args.old:
            old = OldGateway(args.old, port, "paced", args.server_flags)
            paths.append((f"glmadmin@{old.commit}", f"http://127.0.0.1:{old.port}{endpoint}", old.headers,
                          old.proc.pid))
        if args.litellm:
            from bench.gateway import litellm_peer

            litellm_port = free_port()
            litellm, litellm_headers = litellm_peer.start(port, litellm_port, "paced")
            paths.append((f"litellm-{litellm_peer.VERSION}", f"http://127.0.0.1:{litellm_port}{endpoint}",
                          litellm_headers, litellm.pid))
        print(f"paced synthetic upstream (20 ms to first token, 5 ms per token), {endpoint}:", flush=True)
        return compare(args, paths, completion_body("paced", args.max_tokens, args.endpoint))
    finally:
        if litellm is not None:
            litellm.terminate()
        if old is not None:
            old.close()
        upstream.terminate()


def capacity(args, scratch, gateway_url, headers):
    """SSE chunks/s through one gateway process from the synthetic upstream (vs. reading it directly)."""
    from inference.gateway import routing
    from inference.models import Engine

    port = free_port()
    upstream = subprocess.Popen([PY, str(Path(__file__).with_name("synthetic.py")), str(port)])
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30)
        # Never started by a supervisor (none runs here); marked ready by hand below.
        Engine.objects.create(name="synthetic", port=port, model="synthetic", served_model_name="synthetic")
        Engine.objects.filter(name="synthetic").update(state="ready")
        routing.publish()
        body = {"model": "synthetic", "prompt": "x", "max_tokens": 2000, "stream": True}
        results = {}
        for name, url, hdrs in (("direct", f"http://127.0.0.1:{port}/v1/completions", {}),
                                ("gateway", gateway_url, headers)) * 2:
            _, rate = args.load.load(url, hdrs, body, args.capacity_clients, args.seconds)
            results.setdefault(name, []).append(rate)
        direct, gateway = max(results["direct"]), max(results["gateway"])
        print(f"capacity, {args.capacity_clients} streams from a synthetic upstream: {gateway:.0f} SSE chunks/s "
              f"through one gateway process vs {direct:.0f} read directly (ratio {gateway / direct:.2f})", flush=True)
        return {"clients": args.capacity_clients, "client_processes": args.load.processes(args.capacity_clients),
                "chunks_per_s_gateway": gateway, "chunks_per_s_direct": direct}
    finally:
        upstream.terminate()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--capacity-clients", type=int, default=32)
    parser.add_argument("--model", help="a model directory to serve instead of generating the demo model")
    parser.add_argument("--only", choices=("paced", "capacity"), help="only this part: no engine is started")
    parser.add_argument("--clients", type=int, help="client processes the streams are spread over "
                        "(default: one per 16 streams, at most one fewer than the cores)")
    parser.add_argument("--endpoint", choices=("chat", "completions"), default="chat",
                        help="what the paced part asks for, on every path (the engine part: completions)")
    parser.add_argument("--no-litellm", dest="litellm", action="store_false",
                        help="leave the LiteLLM proxy out of the paced part")
    parser.add_argument("--old", metavar="REV", help="also glmadmin's gateway at this commit (or in this "
                        "directory, a tree extracted beforehand), in the paced part")
    args = parser.parse_args()
    args.load = Clients(args.clients)
    scratch = Scratch("gateway-bench")
    from inference import demo
    from inference.models import ApiKey, Engine

    with_engine = args.only is None
    # On a GPU machine the same tiny model runs on the first GPU (a small share of its memory).
    gpu = {"gpu_ids": "0", "gpu_memory_utilization": 0.2} if demo.has_nvidia_gpu() else {}
    if with_engine:
        model = args.model or str(scratch.demo_model())
        Engine.objects.create(name="bench", port=ENGINE_PORT, model=model, served_model_name="bench",
                              enforce_eager=True, max_num_seqs=128, extra_args=[] if args.model else demo.ENGINE_ARGS,
                              **gpu)
    key = ApiKey(name="bench", requests_per_minute=10**6, max_concurrent=10**4)
    plain = key.new_secret()
    key.save()
    gateway_port = free_port()
    gateway = None
    results = {"args": {name: value for name, value in vars(args).items() if name != "load"},
               "started": datetime.now().astimezone().isoformat(timespec="seconds"), "cores": os.cpu_count(),
               "load_1min_at_start": os.getloadavg()[0]}
    try:
        if with_engine:
            scratch.manage("start_engine", "bench", "--timeout", "600")
        results["server"] = args.server_flags = server_flags()
        gateway = start_gateway(scratch.env, gateway_port, results["server"])
        headers = {"Authorization": f"Bearer {plain}"}
        gateway_url = f"http://127.0.0.1:{gateway_port}/v1/completions"
        if with_engine:
            print(f"real vLLM engine ({'GPU' if gpu else 'CPU'} build, demo model):", flush=True)
            results["vllm"] = compare(args, [("direct", f"http://127.0.0.1:{ENGINE_PORT}/v1/completions", {}, None),
                                             ("glmadmin", gateway_url, headers, gateway.pid)],
                                      completion_body("bench", args.max_tokens, "completions"))
            scratch.manage("stop_engine", "bench")  # its CPU use would blur the next measurements
        if args.only in (None, "paced"):
            results["paced"] = paced(args, gateway, gateway_port, headers)
        if args.only in (None, "capacity"):
            results["capacity"] = capacity(args, scratch, gateway_url, headers)
        for name in ("vllm", "paced"):
            if name in results:
                at16, at64 = results[name][1]["paths"]["glmadmin"], results[name][2]["paths"]["glmadmin"]
                print(f"goals ({name}): added TTFT at 16 streams p50 {at16['added_ttft_p50_ms']:+.2f} ms (goal <= 1), "
                      f"p99 {at16['added_ttft_p99_ms']:+.2f} ms (goal <= 5); throughput ratio at 64 streams "
                      f"{at64['throughput_ratio']:.3f} vs direct (goal >= 0.97)")
        RESULTS.mkdir(parents=True, exist_ok=True)
        out = RESULTS / f"gateway-{datetime.now():%Y%m%d-%H%M%S}.json"
        out.write_text(json.dumps(results, indent=1))
        print(f"results: {out}")
    finally:
        args.load.close()
        if gateway is not None:
            gateway.terminate()
        if with_engine:
            scratch.manage("stop_engine", "--all", check=False)
        scratch.close()


if __name__ == "__main__":
    main()
