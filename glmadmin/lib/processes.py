"""Detached process groups: start, find again, signal, and who holds a port.

An engine runs in its own session (so its process group is its own): the web
and worker processes can restart without taking it down, and stopping it can
signal every process it spawned (vLLM's EngineCore and helpers) at once.
A pid alone is not an identity (pids are reused), so a process is found again
by its pid *and* its create time.
"""

import errno
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import psutil


def spawn(argv: list[str], env: dict, log_path: Path, cwd: Path, log_config: Path | None = None,
          run_as: tuple[int, int] | None = None) -> psutil.Process:
    """Start argv detached, in a new session, its output going to log_path through a rotating writer.

    The writer (logwriter.py) runs in the new process group beside argv, which
    keeps the returned pid and leads the group; it rotates log_path by size as
    the log policies in log_config say (read again when that file changes).
    run_as (uid, gid): argv runs as that user, with no supplementary groups; the writer stays ours.
    """
    log_path.parent.mkdir(parents=True, exist_ok=True)
    # The launcher execs argv in its own process; check here so a missing program is an error to the caller.
    if shutil.which(argv[0], path=env.get("PATH")) is None:
        raise FileNotFoundError(errno.ENOENT, "No such file or directory", argv[0])
    if log_config is None:
        log_config = default_log_config()
    writer = [sys.executable, "-I", str(LOGWRITER), "--config", str(log_config),
              *(["--run-as", f"{run_as[0]}:{run_as[1]}"] if run_as else []), str(log_path), "--", *argv]
    with open(log_path, "ab") as log:
        # stderr: where the launcher itself complains before the pipe exists.
        proc = subprocess.Popen(writer, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                stderr=log, start_new_session=True, close_fds=True)
    return psutil.Process(proc.pid)


LOGWRITER = Path(__file__).with_name("logwriter.py")


def default_log_config() -> Path:
    from django.conf import settings

    return settings.DATA_DIR / "log-policies.json"


def find(pid: int | None, create_time: float | None) -> psutil.Process | None:
    """The live process with this pid and create time, or None if it is gone."""
    if not pid or create_time is None:
        return None
    _reap(pid)
    try:
        proc = psutil.Process(pid)
        if abs(proc.create_time() - create_time) > 0.01 or proc.status() == psutil.STATUS_ZOMBIE:
            return None
        return proc
    except psutil.Error:
        return None


def _reap(pid: int) -> None:
    # If this process started the engine, collect its exit status so it does not linger as a zombie.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def group_alive(pgid: int) -> bool:
    """Whether any process of the group still exists (zombies of ours are reaped first)."""
    _reap(pgid)
    return bool(group_members(pgid))


def terminate(pid: int) -> None:
    """Ask the group leader to shut down (vLLM drains on SIGTERM); wake it if it was stopped."""
    for sig in (signal.SIGTERM, signal.SIGCONT):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return


def kill_group(pgid: int) -> None:
    try:
        os.killpg(pgid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def group_members(pgid: int) -> list[psutil.Process]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid and proc.status() != psutil.STATUS_ZOMBIE:
                members.append(proc)
        except (ProcessLookupError, psutil.Error):
            continue
    return members


def writes_log(pgid: int, log_path: Path) -> bool:
    """Whether glmadmin's log writer for log_path (or its launcher, before it forks the writer) runs in process
    group pgid as this process's own user: how a process found on an engine's port is known to be ours."""
    for member in group_members(pgid):
        try:
            cmdline = member.cmdline()
            if (member.uids().real == os.getuid() and str(log_path) in cmdline
                    and any(part.endswith(f"/{LOGWRITER.name}") for part in cmdline[:3])):
                return True
        except psutil.Error:
            continue
    return False


SHM = "/dev/shm/"


def shared_memory(pgid: int) -> list[str]:
    """POSIX shared memory segments mapped by the group (vLLM's message queues live there)."""
    paths = set()
    for proc in group_members(pgid):
        try:
            paths.update(m.path for m in proc.memory_maps(grouped=True) if m.path.startswith(SHM))
        except psutil.Error:
            continue
    return sorted(paths)


def remove_shared_memory(paths: list[str]) -> None:
    """Unlink segments a killed group left behind: a SIGKILLed vLLM leaves hundreds of MB in /dev/shm."""
    for path in paths:
        if path.startswith(SHM) and "/" not in path[len(SHM):]:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def port_holder(port: int) -> psutil.Process | None:
    """The process listening on a TCP port of this machine, if any."""
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                return psutil.Process(conn.pid)
            except psutil.Error:
                return None
    return None


def with_arguments(*arguments: str) -> list[psutil.Process]:
    """Live processes whose command line has every one of these arguments (whole arguments, not substrings)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if all(a in (proc.info["cmdline"] or []) for a in arguments) and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.Error:
            continue
    return found


def leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except ProcessLookupError:
        return False


def port_in_use(address: str, port: int) -> bool:
    """Whether a server could not listen on address:port now because something else does.

    A test bind, as a server binds (SO_REUSEADDR: a connection in TIME_WAIT is no conflict): it needs no
    privileges, unlike finding the listener's pid, and it sees a listener on the wildcard address too.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((address, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            if exc.errno == errno.EADDRNOTAVAIL:
                return False  # not an address of this machine: nothing here can hold it
            raise
    return False
