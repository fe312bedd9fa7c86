"""Which files some process on this machine has open or mapped, and which processes could not be looked at.

Read from /proc: every /proc/PID/fd/N is stat'ed (the magic link leads to the
open file itself, whatever path it was opened by, even a renamed one), and
/proc/PID/maps lists files mapped into memory (model weights, compiled
kernels) with their device and inode. Files are identified by (device,
inode), the identity a scan sees too, so no path comparison can be fooled.

Without root (or CAP_SYS_PTRACE) the kernel refuses the fd links and maps of
other users' processes. Such a process may hold any file open, so it is
reported as unreadable and callers keep their files rather than guess.
Processes that end mid-way, kernel threads and zombies hold no files of ours
and are passed over. Processes in other PID namespaces (other containers) are
not in this /proc at all; nothing here can see them.
"""

import errno
import fcntl
import os
import pwd
import signal
from dataclasses import dataclass, field

PF_KTHREAD = 0x00200000  # /proc/PID/stat flags: a kernel thread
GONE = (FileNotFoundError, ProcessLookupError)  # the process (or the descriptor) ended while we looked


@dataclass
class OpenFiles:
    inodes: set[tuple[int, int]] = field(default_factory=set)  # (st_dev, st_ino) open or mapped
    unreadable: list[int] = field(default_factory=list)  # pids whose files could not be read

    @property
    def complete(self) -> bool:
        return not self.unreadable

    def on(self, dev: int) -> set[int]:
        """The open inodes of the filesystem dev."""
        return {ino for d, ino in self.inodes if d == dev}


def open_inodes(proc: str = "/proc") -> OpenFiles:
    """Every file open or mapped by a process we can see, and the pids we could not see into."""
    found = OpenFiles()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        try:  # this process too: a file we hold open is in use
            _add_fds(f"{proc}/{pid}/fd", found.inodes)
            _add_maps(f"{proc}/{pid}/maps", found.inodes)
        except OSError:  # refused (another user's process), or any other reason we cannot tell
            if not _holds_no_files(f"{proc}/{pid}/stat"):
                found.unreadable.append(int(pid))
    return found


def unused(fd: int) -> bool | None:
    """Whether no process but us has the open file fd open or mapped, as the kernel itself knows it.

    The kernel grants a write lease only on a file nobody else has open (mapped files count, in any
    process or container); closing fd drops the lease. None when it cannot be asked: a filesystem without
    leases (NFS, FUSE), leases switched off, or another user's file without CAP_LEASE.
    """
    # Someone opening the file before we close fd breaks the lease with a signal: SIGURG is ignored by
    # default, where the default SIGIO would kill this process.
    fcntl.fcntl(fd, fcntl.F_SETSIG, signal.SIGURG)
    try:
        fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)
    except OSError as exc:
        if exc.errno in (errno.EAGAIN, errno.EBUSY):
            return False
        return None
    return True


def owner(pid: int, proc: str = "/proc") -> str:
    """'1234 (python3, user nobody)' for messages; what can be read of it."""
    try:
        with open(f"{proc}/{pid}/stat", "rb") as fh:
            command = fh.read().split(b"(", 1)[1].rsplit(b")", 1)[0].decode(errors="replace")
        uid = os.stat(f"{proc}/{pid}").st_uid
        user = pwd.getpwuid(uid).pw_name
    except (OSError, IndexError, KeyError):
        return str(pid)
    return f"{pid} ({command}, user {user})"


def _holds_no_files(stat_path: str) -> bool:
    """A kernel thread or a zombie (or a process gone by now): nothing to keep files for."""
    try:
        with open(stat_path, "rb") as fh:
            after_command = fh.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return True
    state, flags = after_command[0], int(after_command[6])
    return state in (b"Z", b"X") or bool(flags & PF_KTHREAD)


def _add_fds(fd_dir: str, found: set) -> None:
    try:
        names = os.listdir(fd_dir)
    except GONE:
        return
    for name in names:
        try:
            st = os.stat(f"{fd_dir}/{name}")
        except GONE:
            continue
        found.add((st.st_dev, st.st_ino))


def _add_maps(maps: str, found: set) -> None:
    try:
        with open(maps) as fh:
            lines = fh.readlines()
    except GONE:
        return
    for line in lines:
        # address perms offset dev(major:minor, hex) inode path
        parts = line.split(None, 5)
        if len(parts) < 6 or parts[4] == "0":
            continue
        major, _, minor = parts[3].partition(":")
        try:
            found.add((os.makedev(int(major, 16), int(minor, 16)), int(parts[4])))
        except ValueError:
            continue
