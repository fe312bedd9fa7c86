"""Run a command with its output written to a log file that rotates by size without losing a line.

    python -I logwriter.py [--config FILE] [--max-bytes N] [--keep K] [--no-compress] [--run-as UID:GID]
                           LOG -- COMMAND...
    python -I logwriter.py [options] LOG            (no command: stdin to LOG)

This process creates a pipe, forks a writer (in this process group), points
its own stdout/stderr at the pipe and execs COMMAND: the command keeps this
process's pid and is the leader of the group, so signalling or killing the
group reaches the writer too. The writer is the only process holding the log
file: it rotates by renaming the file (LOG -> LOG.1 -> LOG.2 ...; gzip of the
rotated files in the background) and opening a new one, at a line boundary,
so nothing is ever written to a file that was moved away and nothing is lost,
unlike copytruncate. It exits when every holder of the pipe's write end
(the command and its children) has gone.

--run-as UID:GID (started as root): the command runs as that user and group
with no supplementary groups, switched just before exec, while the writer
stays this process's user: the log, in a directory the command's user may not
enter, is written only by the writer, and the command cannot rewrite it.

--config names a JSON file of log policies ([{"patterns": [...], "max_bytes":
N, "keep": K, "compress": bool}]); the first whose pattern matches LOG wins,
and a change of the file is picked up while running. Standard library only:
it runs as a script with -I, apart from Django.
"""

import argparse
import fnmatch
import gzip
import json
import os
import shutil
import signal
import sys
import threading
import time

CHUNK = 65536
CONFIG_CHECK_SECONDS = 2.0


class RotatingLog:
    def __init__(self, path: str, max_bytes: int, keep: int, compress: bool, config: str | None = None):
        self.path = path
        self.max_bytes, self.keep, self.compress = max_bytes, keep, compress
        self.config = config
        self._config_mtime = None
        self._config_checked = 0.0
        self._compressor: threading.Thread | None = None
        self.fd = self._open()
        self.size = os.fstat(self.fd).st_size
        self.at_line_start = True
        self.reload_config()

    def _open(self) -> int:
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)

    def reload_config(self) -> None:
        self._config_checked = time.monotonic()
        if not self.config:
            return
        try:
            mtime = os.stat(self.config).st_mtime_ns
            if mtime == self._config_mtime:
                return
            with open(self.config) as fh:
                policies = json.load(fh)
            self._config_mtime = mtime
        except (OSError, ValueError):
            return  # keep the settings we have: a log writer must never stop over its config
        for policy in policies:
            if any(fnmatch.fnmatch(self.path, p) for p in policy.get("patterns", [])):
                self.max_bytes = int(policy.get("max_bytes", self.max_bytes))
                self.keep = int(policy.get("keep", self.keep))
                self.compress = bool(policy.get("compress", self.compress))
                return

    def write(self, data: bytes) -> None:
        if time.monotonic() - self._config_checked > CONFIG_CHECK_SECONDS:
            self.reload_config()
        while data:
            if not self.max_bytes or self.size + len(data) <= self.max_bytes:
                self._write_all(data)
                return
            # Rotate only at a line end, so every file holds whole lines.
            if self.at_line_start:
                cut = data.rfind(b"\n", 0, max(self.max_bytes - self.size, 0)) + 1  # the whole lines that fit
                if not cut and not self.size:
                    cut = data.find(b"\n") + 1  # a line longer than a whole file gets a file of its own
            else:
                cut = data.find(b"\n") + 1  # finish the line in progress first
            if cut:
                self._write_all(data[:cut])
                data = data[cut:]
                self.rotate()
            elif (self.at_line_start and self.size) or self.size >= 2 * self.max_bytes:
                self.rotate()  # (the second case: a writer that never ends its line must not grow the file forever)
            else:
                self._write_all(data)  # the line goes on in the next chunk
                return

    def _write_all(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
            self.size += written
        self.at_line_start = data.endswith(b"\n")

    def rotate(self) -> None:
        if self._compressor:
            self._compressor.join()  # the previous .1 must be settled before names shift
        os.close(self.fd)
        for n in range(self.keep, 0, -1):
            for suffix in ("", ".gz"):
                older = f"{self.path}.{n}{suffix}"
                if not os.path.exists(older):
                    continue
                if n >= self.keep:
                    os.unlink(older)
                else:
                    os.rename(older, f"{self.path}.{n + 1}{suffix}")
        if self.keep:
            os.rename(self.path, f"{self.path}.1")
        else:
            os.unlink(self.path)
        self.fd = self._open()
        self.size = 0
        if self.compress and self.keep:
            self._compressor = threading.Thread(target=gzip_file, args=(f"{self.path}.1",), daemon=True)
            self._compressor.start()

    def close(self) -> None:
        if self._compressor:
            self._compressor.join()
        os.close(self.fd)


def gzip_file(path: str) -> None:
    """path -> path.gz, written aside and renamed, so a crash never leaves half a file under the final name."""
    tmp = f"{path}.gz.tmp"
    with open(path, "rb") as src, gzip.open(tmp, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst, CHUNK)
    os.rename(tmp, f"{path}.gz")
    os.unlink(path)


def pump(read_fd: int, log: RotatingLog) -> None:
    while True:
        try:
            data = os.read(read_fd, CHUNK)
        except InterruptedError:
            continue
        if not data:
            break
        try:
            log.write(data)
        except OSError as exc:
            # Disk full or the like: drop this output rather than die, which would
            # break the command's pipe and take the engine down with us.
            print(f"logwriter: {log.path}: {exc}", file=sys.stderr)
    log.close()


def run_writer(read_fd: int, args) -> None:
    # Signals are for the command: the writer stops only when the pipe is empty and closed.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    pump(read_fd, RotatingLog(args.log, args.max_bytes, args.keep, args.compress, args.config))


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config")
    parser.add_argument("--max-bytes", type=int, default=50 * 1024 * 1024)
    parser.add_argument("--keep", type=int, default=5)
    parser.add_argument("--no-compress", dest="compress", action="store_false")
    parser.add_argument("--pipe-fd", type=int, default=0, help="read from this descriptor (default: stdin)")
    parser.add_argument("--run-as", help="UID:GID the command runs as (the writer does not)")
    parser.add_argument("log")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:  # the writer: the pipe (or stdin) to the rotating log
        run_writer(args.pipe_fd, args)
        return
    read_fd, write_fd = os.pipe()
    child = os.fork()
    if child == 0:
        # Fork once more and let the middle process exit, so the writer is not
        # a child of the command (which might reap or wait for its children).
        if os.fork():
            os._exit(0)
        os.close(write_fd)
        # Re-exec so the writer's command line names the log, not the command: tools
        # that find a program by its command line (ps, pgrep, glmadmin's adoption) must not take it for the engine.
        os.set_inheritable(read_fd, True)
        writer = [sys.executable, "-I", os.path.abspath(__file__), "--pipe-fd", str(read_fd), "--max-bytes",
                  str(args.max_bytes), "--keep", str(args.keep), *(["--config", args.config] if args.config else []),
                  *([] if args.compress else ["--no-compress"]), args.log]
        try:
            os.execv(sys.executable, writer)
        finally:
            os._exit(1)
    os.waitpid(child, 0)
    os.close(read_fd)
    os.dup2(write_fd, 1)
    os.dup2(write_fd, 2)
    os.close(write_fd)
    if args.run_as:
        drop_to(*(int(part) for part in args.run_as.split(":")))
    os.execvp(command[0], command)


def drop_to(uid: int, gid: int) -> None:
    """Become uid:gid for good, as subprocess's user=/group=/extra_groups=[] do: supplementary groups first
    (root's would stay otherwise), then the group, then the user (after which nothing else may be changed)."""
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid or os.getgid() != gid:  # never exec with privileges left
        os._exit(126)


if __name__ == "__main__":
    main(sys.argv[1:])
