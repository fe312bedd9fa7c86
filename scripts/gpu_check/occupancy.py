"""A start onto a GPU another process holds, and the engine as an OS user of its own, on a real GPU (issue 15),
self-checking.

On a scratch glmadmin (SQLite, private Redis), with GLMADMIN_ENGINE_USER set (nobody by default), this script is
the host's supervisor (inference.supervisor.reconcile_host, a step a second as the beat would) for one Engine row on
GPU 0 (the GLM-4.7-Flash-architecture checkpoint, --load-format dummy, enforce_eager):

0. before glmadmin starts: what could keep a CUDA engine from running as that user, said precisely: the engine
   runtime closed to it, /dev/nvidia* or /dev/shm closed to it, the model's files, directories of the worker's
   environment it cannot write (caches), and CUDA itself tried as that user (torch, an allocation on GPU 0). Where
   the GPU device nodes are open to their group only, a user of that primary group is made with useradd (glmadmin
   drops supplementary groups). Where it cannot work at all, the engine runs as root for check 1 and check 2 fails
   with the obstacle;
1. a foreign process (a python3 child of this script, torch, --hold-gib on GPU 0, then asleep) holds GPU 0: the
   engine does not start; its reason says it waits and names the holder's pid and GiB (as this script's own NVML
   reading has them); an engine incident is open. The holder is killed: the engine starts by itself on the next
   steps and becomes ready, the incident resolves, NVML shows the engine's process on GPU 0, attributed to it by
   glmadmin's own sampler;
2. that same start ran as the engine user: every process of the engine (API server, EngineCore) has its uid and
   gid (real, effective, saved, filesystem) and no supplementary groups, glmadmin's log writer stays root, HOME is
   the engine's own home (0700, the user's), the data directory is closed to it (ls and cat as that user are
   refused), the GPU memory NVML shows is held by the user's process, and one chat completion is answered;

then the engine is stopped and NVML must show GPU 0 empty. One line per check; the exit status is the number of
failed checks.

    python3 scripts/gpu_check/occupancy.py --model /tmp/glm47 [--engine-user nobody] [--hold-gib 40]
    python3 scripts/gpu_check/occupancy.py --cpu    # vLLM's CPU build and the demo model: no NVML, so no holder
                                                    # and no check 1; the engine-user plumbing of check 2

scripts/gpu_check/occupancy_run.sh runs it on the lent GPU machine (see README.md beside this file).
"""

import argparse
import os
import pwd
import re
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from glmadmin.lib import runas  # noqa: E402 - no Django in it: read before glmadmin's settings are
from scripts.gpu_check.checks import FAILED, check, stamp  # noqa: E402

ENGINE = "glm"
GIB = 1024**3
# The worker's variables that name where the libraries under vLLM write (an engine gets them unless they hold a
# credential): where one points into root's own directories, the engine user cannot write its caches there.
CACHE_VARIABLE = re.compile(r"CACHE|^(HF_HOME|TORCH_HOME|TRITON_HOME|TRITON_DUMP_DIR|VLLM_CONFIG_ROOT|TMPDIR|XDG_\w+)$")
REASON = re.compile(r"GPU (\d+) holds ([0-9.]+) GiB of foreign process (\d+) \(([^)]*)\)")
# What the holder runs: a foreign process holding GPU 0's memory until it is killed.
HOLDER = """
import sys, time, torch
held = torch.empty(int(float(sys.argv[1]) * 2**30), dtype=torch.uint8, device="cuda:0")
torch.cuda.synchronize()
print("held", flush=True)
while True:
    time.sleep(3600)
"""
# CUDA as the engine user, before glmadmin starts anything: vLLM's import, then what it does first on the GPU (a
# context, an allocation).
CUDA_PROBE = """
import torch
import vllm  # the runtime's packages (PYTHONPATH) readable by the user
free, total = torch.cuda.mem_get_info(0)
x = torch.ones(1 << 20, device="cuda:0").sum().item()
print(f"CUDA ok as uid {__import__('os').getuid()}: {torch.cuda.get_device_name(0)}, {free / 2**30:.1f} of "
      f"{total / 2**30:.1f} GiB free")
"""


def status_ids(pid: int, field: str) -> list[int]:
    """Uid: or Gid: of /proc/PID/status (real, effective, saved, filesystem), or Groups:."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return [int(value) for value in line.split()[1:]]
    return []


def environ(pid: int) -> dict[str, str]:
    with open(f"/proc/{pid}/environ", "rb") as fh:
        return dict(item.decode().split("=", 1) for item in fh.read().split(b"\0") if b"=" in item)


def as_user(user: runas.User, argv: list[str], **kwargs) -> subprocess.CompletedProcess:
    """argv as `user` (its primary group only), as glmadmin starts an engine."""
    return subprocess.run(argv, user=user.uid, group=user.gid, extra_groups=[], capture_output=True, text=True,
                          **kwargs)


def allowed(user: runas.User, path: Path, bits: int) -> bool:
    """From the mode bits, as the kernel decides for the user's uid and primary group (see runas.closed_to)."""
    info = path.stat()
    shift = 6 if info.st_uid == user.uid else 3 if info.st_gid == user.gid else 0
    return (info.st_mode >> shift) & bits == bits


def device_nodes() -> list[Path]:
    return sorted(p for p in Path("/dev").glob("nvidia*") if p.is_char_device())


def group_user(name: str, nodes: list[Path]) -> runas.User | None:
    """Where the GPU device nodes are open to their group only (0660 root:video, say): a user of that primary
    group (glmadmin starts engines with no supplementary groups), made with useradd."""
    groups = {p.stat().st_gid for p in nodes}
    if len(groups) != 1 or not all(p.stat().st_mode & 0o060 == 0o060 for p in nodes):
        return None
    gid = groups.pop()
    try:
        pwd.getpwnam(name)
    except KeyError:
        made = subprocess.run(["useradd", "--system", "--gid", str(gid), "--no-create-home", "--home-dir",
                               "/nonexistent", "--shell", "/usr/sbin/nologin", name], capture_output=True, text=True)
        print(f"  useradd {name} (primary group {gid}): exit {made.returncode} {made.stderr.strip()}", flush=True)
    try:
        user = runas.lookup(name)
    except KeyError:
        return None
    return user if user.gid == gid else None


def obstacles(user: runas.User, python: Path, model: Path | None, nodes: list[Path]) -> list[str]:
    """What keeps a CUDA engine from running as `user` here, from the modes (one line each); none: it may work."""
    found = []
    if problem := runas.problem(user.name, Path("/nonexistent-data"), Path(tempfile.gettempdir()) / "homes",
                                python):
        found.append(problem)
    for node in nodes:
        if not allowed(user, node, 0o6):
            found.append(f"{node} is closed to {user.name} (mode {stat.S_IMODE(node.stat().st_mode):o}, uid "
                         f"{node.stat().st_uid} gid {node.stat().st_gid})")
    shm = Path("/dev/shm")
    if shm.exists() and not allowed(user, shm, 0o3):
        found.append(f"/dev/shm is closed to {user.name} (mode {stat.S_IMODE(shm.stat().st_mode):o}): vLLM's "
                     f"message queues live there")
    if model is not None and model.is_dir() and (closed := runas.closed_to(user, model) or runas.unreadable(user,
                                                                                                        model)):
        found.append(f"the model: {closed} is closed to {user.name}")
    for entry in os.environ.get("PYTHONPATH", "").split(":"):
        # Python passes over an entry it cannot read (glmadmin's checkout, say); whether vLLM imports is the
        # CUDA probe's to say.
        if entry and Path(entry).is_dir() and runas.closed_to(user, Path(entry)):
            print(f"  NOTE PYTHONPATH entry {entry} is closed to {user.name}", flush=True)
    return found


def cache_notes(user: runas.User) -> None:
    """Directories the worker's environment names for caches that the engine user could not write."""
    for name, value in sorted(os.environ.items()):
        if not CACHE_VARIABLE.search(name) or not value.startswith("/"):
            continue
        path = Path(value)
        while not path.exists():
            path = path.parent
        if not allowed(user, path, 0o3):
            print(f"  NOTE {name}={value} (passed to the engine if not a credential): {path} is not writable by "
                  f"{user.name}", flush=True)


def read_until(proc: subprocess.Popen, word: bytes, timeout: float) -> bytes:
    """The child's output until a line that is `word`, its exit, or the timeout."""
    deadline, out = time.time() + timeout, b""
    while time.time() < deadline and word + b"\n" not in out:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.time()))
        if not ready:
            break
        chunk = os.read(proc.stdout.fileno(), 65536)
        if not chunk:
            break
        out += chunk
    return out


def nvml_gpu(index: int) -> dict | None:
    """This script's own NVML reading of one GPU: used, total, {pid: bytes}; None without NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
        procs = {p.pid: p.usedGpuMemory or 0 for p in pynvml.nvmlDeviceGetComputeRunningProcesses(handle)}
    except Exception as exc:  # noqa: BLE001 - the CPU build has no NVML
        print(f"  NVML not read: {exc}", flush=True)
        return None
    return {"used": memory.used, "total": memory.total, "processes": procs}


def show_nvml(t0, label: str, index: int) -> dict | None:
    gpu = nvml_gpu(index)
    if gpu is not None:
        procs = ", ".join(f"pid {pid} ({name_of(pid)}, uid {uid_of(pid)}) {used / GIB:.2f} GiB"
                          for pid, used in gpu["processes"].items()) or "no process"
        print(f"{stamp(t0)} NVML {label}: GPU {index} {gpu['used'] / GIB:.1f} of {gpu['total'] / GIB:.1f} GiB; "
              f"{procs}", flush=True)
    return gpu


def name_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return "?"


def uid_of(pid: int) -> str:
    ids = status_ids(pid, "Uid") if Path(f"/proc/{pid}").exists() else []
    return str(ids[0]) if ids else "?"


def sample(t0, gpu: int):
    """One sampling cycle through glmadmin's own code, as the host's beat task runs it; GPU `gpu`'s processes."""
    from inference.models import Engine
    from monitoring.telemetry import service

    names = {e.pk: e.name for e in Engine.objects.all()}
    cycle = service.sample()
    found = [p for g in cycle.gpus if g.index == gpu for p in g.processes]
    owners = ", ".join(f"pid {p.pid} {p.name} {(p.used_bytes or 0) / GIB:.2f} GiB -> "
                       f"{'engine ' + names.get(p.engine_id, '?') if p.engine_id else 'foreign'}"
                       for p in found) or "none"
    print(f"{stamp(t0)} glmadmin's sampler (NVML status {cycle.gpu_status!r}), GPU {gpu}: {owners}", flush=True)
    return found


def run_command(scratch, t0, *args, timeout=300) -> int:
    started = time.time()
    print(f"{stamp(t0)} $ manage.py {' '.join(args)}", flush=True)
    proc = subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=scratch.env, capture_output=True,
                          text=True, timeout=timeout)
    for line in (proc.stdout + proc.stderr).splitlines():
        print(f"    | {line}", flush=True)
    print(f"{stamp(t0)} exit {proc.returncode} after {time.time() - started:.1f} s", flush=True)
    return proc.returncode


def step(rounds: int = 1) -> None:
    """The beat's reconcile loop for this host: `rounds` steps, a second apart (its pace, not a wait for a
    result: each step is judged by what it recorded)."""
    from django.db import close_old_connections

    from inference import supervisor

    for n in range(rounds):
        if n:
            time.sleep(1)
        supervisor.reconcile_host()
        close_old_connections()


def engine_log_errors(engine, limit: int = 25) -> str:
    from inference import supervisor

    path = supervisor.log_file(engine)
    if not path.exists():
        return "(no engine log)"
    lines = path.read_text(errors="replace").splitlines()
    wanted = [ln for ln in lines if re.search(r"Error|error:|denied|Traceback|Permission|cannot|failed", ln)]
    return "\n      ".join((wanted or lines)[-limit:])



def engine_user(args, t0, nodes: list[Path]) -> tuple[runas.User | None, Path]:
    """0. Before glmadmin: can a CUDA engine run as the engine user here? (the user, or None: root; the runtime)"""
    print(f"{stamp(t0)} == 0. the engine user", flush=True)
    for node in nodes:
        info = node.stat()
        print(f"  {node}: mode {stat.S_IMODE(info.st_mode):o} uid {info.st_uid} gid {info.st_gid}", flush=True)
    python = Path(os.environ.get("GLMADMIN_ENGINE_PYTHON", ROOT / ".venv-engine" / "bin" / "python"))
    model = None if args.cpu else Path(args.model)
    try:
        user = runas.lookup(args.engine_user)
    except KeyError:
        check(False, f"check 2: there is no user {args.engine_user} here")
        return None, python
    if closed := runas.closed_to(user, python):
        # A virtualenv made from a Python the user cannot run (pyenv's or uv's under /root): an operator makes the
        # runtime from one it can (README, Engines); here, as the tests do, a view of the same packages on the
        # system's Python of that minor version, so that the rest is still checked. Said, not hidden.
        from tests.support.processes import python_for

        try:
            view = python_for(user, python, args.shared)
        except (AssertionError, StopIteration) as exc:
            print(f"  no view of {python} for {user.name}: {exc or 'no site-packages'}", flush=True)
        else:
            print(f"  NOTE the engine runtime {python} is closed to {user.name} ({closed}); the engine runs {view}, "
                  f"a view of its packages on the system's Python", flush=True)
            python = view
            os.environ["GLMADMIN_ENGINE_PYTHON"] = str(python)
    found = obstacles(user, python, model, nodes)
    if any(str(node) in line for line in found for node in nodes):
        other = group_user(args.group_user, nodes)
        if other is not None:
            print(f"  the GPU device nodes are open to their group only: the engine runs as {other.name} (uid "
                  f"{other.uid}, primary group {other.gid}) instead of {user.name}", flush=True)
            user, found = other, obstacles(other, python, model, nodes)
    cache_notes(user)
    if not args.cpu and not found:
        home = Path(tempfile.mkdtemp(prefix="occupancy-probe-"))
        os.chown(home, user.uid, user.gid)
        # The worker's environment (the image's library paths) with the user's own name and home, as an engine's.
        env = {**os.environ, **runas.environment(user, home), "CUDA_DEVICE_ORDER": "PCI_BUS_ID"}
        try:
            probe = as_user(user, [str(python), "-c", CUDA_PROBE], env=env, cwd=home, timeout=90)
            text, rc = (probe.stdout + probe.stderr).strip(), probe.returncode
        except subprocess.TimeoutExpired:
            text, rc = "no answer within 90 s", None
        print(f"  CUDA as {user.name}: exit {rc}: {text[-1500:]}", flush=True)
        if rc != 0:
            found.append(f"CUDA as {user.name} fails: {text.splitlines()[-1] if text else 'no output'}")
    for line in found:
        print(f"  OBSTACLE {line}", flush=True)
    check(not found, f"check 2: a CUDA engine can run as {user.name} here"
          + (f" (obstacles: {'; '.join(found)}; the engine runs as root for check 1)" if found else ""))
    return (None if found else user), python


def wait_phase(t0, args, engine, holder) -> None:
    """1a. The holder holds GPU 0: the engine waits, says why, and an incident is open."""
    from alerts.models import Incident
    from inference.models import EngineState as S

    print(f"{stamp(t0)} == 1a. GPU 0 held by pid {holder.pid}: {args.wait_steps} supervisor steps", flush=True)
    step(args.wait_steps)
    engine.refresh_from_db()
    gpu = show_nvml(t0, "while held", 0) or {"processes": {}, "total": 0}
    held = gpu["processes"].get(holder.pid)
    check(held is not None and held >= args.hold_gib * GIB,
          f"NVML lists the holder (pid {holder.pid}) on GPU 0 with {(held or 0) / GIB:.2f} GiB")
    print(f"{stamp(t0)} engine {engine.state}, pid {engine.pid}: {engine.state_reason}", flush=True)
    check(engine.state == S.STOPPED and engine.pid is None and not engine.events.filter(state=S.STARTING).exists(),
          f"the engine did not start ({engine.state}, pid {engine.pid})")
    said = REASON.search(engine.state_reason)
    check(engine.state_reason.startswith("waiting: "), "its reason says it is waiting")
    check(bool(said) and said.group(1) == "0" and int(said.group(3)) == holder.pid,
          f"the reason names GPU 0 and the holder's pid {holder.pid}")
    check(bool(said) and held is not None and abs(float(said.group(2)) - held / GIB) <= 0.06,
          f"the reason's GiB ({said.group(2) if said else '?'}) is NVML's for the holder ({(held or 0) / GIB:.2f})")
    incident = Incident.objects.open().filter(source=f"engine-gpu:{engine.host}:{engine.name}").first()
    if incident is not None:
        print(f"{stamp(t0)} incident {incident.source} ({incident.level}): {incident.title}: {incident.message}",
              flush=True)
    check(incident is not None and incident.level == "orange" and engine.state_reason in incident.message,
          "an orange engine incident is open with the reason")
    sample(t0, 0)


def start_phase(t0, args, engine, holder) -> bool:
    """1b. The holder is killed: the engine starts by itself and becomes ready; the incident resolves."""
    from alerts.models import Incident
    from inference.models import EngineState as S

    print(f"{stamp(t0)} == 1b. {'the holder killed; ' if holder else ''}the supervisor steps until the engine is "
          "ready", flush=True)
    if holder is not None:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    killed = time.time()
    started = None
    seen = engine.events.count()
    while time.time() - killed < args.start_timeout:
        step()
        engine.refresh_from_db()
        for event in engine.events.order_by("pk")[seen:]:
            print(f"{stamp(t0)} engine event: {event.state}: {event.reason}", flush=True)
            seen += 1
            if event.state == S.STARTING and started is None:
                started = time.time() - killed
        if engine.state in (S.READY, S.BACKOFF, S.FAILED):
            break
        time.sleep(1)
    check(started is not None, f"the engine started by itself ({started if started is None else round(started, 1)} "
          f"s after {'the holder' if holder else 'this loop'} began)")
    ready = engine.state == S.READY
    if not check(ready, f"the engine is ready ({engine.state}: {engine.state_reason}; {time.time() - killed:.1f} s "
                 f"after {'the holder' if holder else 'this loop began'})"):
        print(f"  engine log (errors):\n      {engine_log_errors(engine)}", flush=True)
    if holder is not None:
        source = f"engine-gpu:{engine.host}:{engine.name}"
        last = Incident.objects.filter(source=source).order_by("-pk").first()
        check(last is not None and last.resolved_at is not None and not Incident.objects.open().filter(
            source=source).exists(), f"the incident resolved (at {last.resolved_at if last else 'no incident'})")
    return ready


def gpu_phase(t0, args, engine, user) -> None:
    """1c + 2. NVML shows the engine's process on GPU 0, attributed to it, held by the engine user."""
    gpu = show_nvml(t0, "engine ready", 0)
    if gpu is None:
        return
    mine = sample(t0, 0)
    held = sum(p.used_bytes or 0 for p in mine if p.engine_id == engine.pk)
    check(bool(mine) and all(p.engine_id == engine.pk for p in mine),
          f"every process on GPU 0 is attributed to the engine by glmadmin ({len(mine)} process(es))")
    check(GIB < held <= (args.gpu_memory_utilization + 0.02) * gpu["total"],
          f"the engine holds {held / GIB:.1f} GiB of GPU 0, within its reservation ({args.gpu_memory_utilization:g}"
          f" = {args.gpu_memory_utilization * gpu['total'] / GIB:.1f} GiB + 2 %)")
    if user is not None:
        uids = {pid: status_ids(pid, "Uid") for pid in gpu["processes"]}
        check(bool(uids) and all(ids == [user.uid] * 4 for ids in uids.values()),
              f"NVML's processes on GPU 0 run as {user.name} (uid {user.uid}): {uids}")


def user_phase(t0, engine, user) -> None:
    """2. The engine as its own user: its processes, its home, the data directory closed to it."""
    from django.conf import settings

    from glmadmin.lib import processes
    from inference import supervisor

    print(f"{stamp(t0)} == 2. the engine as {user.name} (uid {user.uid}, gid {user.gid})", flush=True)
    members = processes.group_members(engine.pid)
    writers = [p for p in members if any("logwriter.py" in part for part in p.cmdline())]
    engine_side = [p for p in members if p not in writers]
    for proc in members:
        print(f"  pid {proc.pid} {proc.name()}: Uid {status_ids(proc.pid, 'Uid')} Gid {status_ids(proc.pid, 'Gid')}"
              f" Groups {status_ids(proc.pid, 'Groups')}", flush=True)
    check(len(engine_side) >= 2 and any(p.pid == engine.pid for p in engine_side),
          f"the engine's group has the API server and its EngineCore ({len(engine_side)} process(es))")
    check(all(status_ids(p.pid, "Uid") == [user.uid] * 4 and status_ids(p.pid, "Gid") == [user.gid] * 4
              and status_ids(p.pid, "Groups") == [] for p in engine_side),
          f"each engine process runs as {user.name}: uid {user.uid}, gid {user.gid}, no supplementary groups")
    check(bool(writers) and all(status_ids(p.pid, "Uid")[0] == os.geteuid() for p in writers),
          "glmadmin's log writer (same group) stays root")
    home = settings.ENGINE_HOME_DIR / engine.name
    env = environ(engine.pid)
    info = home.stat()
    check(env.get("HOME") == str(home) and env.get("USER") == user.name and info.st_uid == user.uid
          and stat.S_IMODE(info.st_mode) == 0o700, f"HOME is the engine's own {home} ({user.name}'s, mode 0700)")
    written = sorted(str(p.relative_to(home)) for p in home.glob("*/*"))[:20] + sorted(
        str(p.relative_to(home)) for p in home.glob("*") if p.is_file())
    print(f"  what the engine wrote in its home: {written or 'nothing'}", flush=True)
    data = settings.DATA_DIR.stat()
    check(stat.S_IMODE(data.st_mode) == 0o700 and data.st_uid == os.geteuid(),
          f"the data directory {settings.DATA_DIR} is root's, mode {stat.S_IMODE(data.st_mode):o}")
    for argv in (["ls", str(settings.DATA_DIR)], ["cat", str(supervisor.log_file(engine))]):
        tried = as_user(user, argv, timeout=30)
        check(tried.returncode != 0 and "Permission denied" in tried.stderr,
              f"as {user.name}, `{' '.join(argv)}` is refused ({tried.stderr.strip()[:120]})")


def chat(t0, engine) -> None:
    import httpx

    started = time.time()
    try:
        answer = httpx.post(f"http://127.0.0.1:{engine.port}/v1/chat/completions", timeout=60, json={
            "model": engine.served_model_name, "messages": [{"role": "user", "content": "hello"}],
            "max_tokens": 8, "temperature": 0})
        body = answer.json()
        said = f"HTTP {answer.status_code} in {time.time() - started:.2f} s: {str(body)[:300]}"
        ok = answer.status_code == 200 and body.get("usage", {}).get("completion_tokens", 0) >= 1
    except (httpx.HTTPError, ValueError) as exc:
        said, ok = f"{type(exc).__name__}: {exc}", False
    print(f"{stamp(t0)} chat completion: {said}", flush=True)
    check(ok, "the engine answers a chat completion")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="/tmp/glm47", help="the GLM-4.7-Flash-architecture checkpoint")
    parser.add_argument("--cpu", action="store_true", help="vLLM's CPU build with the demo model: no holder, no NVML")
    parser.add_argument("--engine-user", default="nobody")
    parser.add_argument("--group-user", default="glmengine",
                        help="the user made (useradd) where the GPU device nodes are open to their group only")
    parser.add_argument("--hold-gib", type=float, default=40.0, help="what the foreign process holds on GPU 0")
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.5)
    parser.add_argument("--max-model-len", type=int, default=4096)
    parser.add_argument("--extra-args", default="--load-format dummy")
    parser.add_argument("--wait-steps", type=int, default=3, help="supervisor steps while the holder holds GPU 0")
    parser.add_argument("--start-timeout", type=int, default=200, help="seconds from the holder's end to ready")
    parser.add_argument("--out", default=os.environ.get("OUT", ""), help="where to copy the logs")
    args = parser.parse_args()
    t0 = time.time()
    args.shared = Path(tempfile.mkdtemp(prefix="occupancy-shared-"))
    args.shared.chmod(0o755)  # the CPU run's model and runtime view: the engine user reads them
    holder = scratch = engine = None
    try:
        if not args.cpu:
            # Started first: its torch import and allocation overlap the engine user's checks.
            holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.hold_gib)], stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, start_new_session=True,
                                      env={**os.environ, "CUDA_DEVICE_ORDER": "PCI_BUS_ID"})
            print(f"{stamp(t0)} holder pid {holder.pid}: {args.hold_gib:g} GiB on GPU 0 (root, torch)", flush=True)
        user, _python = engine_user(args, t0, device_nodes())
        if user is not None:
            os.environ["GLMADMIN_ENGINE_USER"] = user.name  # read by glmadmin's settings, here and in manage.py
        if holder is not None:
            said = read_until(holder, b"held", 90)
            if not check(b"held\n" in said, f"the holder took {args.hold_gib:g} GiB of GPU 0"):
                print(said.decode(errors="replace")[-2000:], flush=True)
                raise SystemExit(1)

        from bench.common import Scratch

        scratch = Scratch("occupancy")
        from bench.gateway.run import free_port
        from inference.models import Engine

        if args.cpu:
            from inference import demo

            fields = {"model": str(demo.make_model(args.shared / "model")), "extra_args": demo.ENGINE_ARGS,
                      "max_model_len": 2048}
            for path in Path(fields["model"]).iterdir():
                path.chmod(0o644)  # transformers saves the weights at 0600: an operator opens them to the user
        else:
            fields = {"model": args.model, "gpu_ids": "0", "max_model_len": args.max_model_len,
                      "gpu_memory_utilization": args.gpu_memory_utilization, "extra_args": args.extra_args.split()}
        # Engine.objects.create, not full_clean: vLLM 0.24 on the GPU machine (../shared/gpu-vllm/README.md).
        engine = Engine.objects.create(name=ENGINE, port=free_port(), served_model_name=ENGINE, enforce_eager=True,
                                       shutdown_timeout=30, startup_timeout=args.start_timeout, **fields)
        print(f"{stamp(t0)} scratch glmadmin in {scratch.dir}; engine user "
              f"{os.environ.get('GLMADMIN_ENGINE_USER', 'none (root)')}; engine row: {fields}", flush=True)
        if holder is not None:
            wait_phase(t0, args, engine, holder)
        else:
            print(f"{stamp(t0)} == 1a. skipped: no GPU to hold (CPU run)", flush=True)
        if start_phase(t0, args, engine, holder):
            gpu_phase(t0, args, engine, user)
            if user is not None:
                user_phase(t0, engine, user)
            chat(t0, engine)
    finally:
        if holder is not None and holder.poll() is None:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait()
        if engine is not None:
            run_command(scratch, t0, "stop_engine", ENGINE, "--timeout", "120")
            if not args.cpu:
                # The driver tears a killed process's context down a moment after the process is gone.
                deadline = time.time() + 10
                while (gpu := nvml_gpu(0)) is not None and gpu["processes"] and time.time() < deadline:
                    time.sleep(0.5)
                show_nvml(t0, "after the stop", 0)
                check(gpu is not None and not gpu["processes"], "GPU 0 has no process after the stop")
        if scratch is not None:
            if args.out:
                for found in scratch.dir.rglob("*.log"):
                    shutil.copy(found, Path(args.out) / f"{found.parent.name}-{found.name}")
            scratch.close()
    print(f"{stamp(t0)} done: {len(FAILED)} check(s) failed" + (": " + "; ".join(FAILED) if FAILED else ""),
          flush=True)
    raise SystemExit(len(FAILED))


if __name__ == "__main__":
    main()
