"""Walk a directory tree and remove files in it without ever leaving it.

Paths are never joined and re-resolved: the root is opened one component at a
time from / and every directory below it relative to its parent's file
descriptor, all with O_NOFOLLOW|O_DIRECTORY, and files are stat'ed and unlinked
relative to their directory's descriptor (fstatat, unlinkat). So a symlink is
never followed, and a directory swapped for a symlink during the run fails to
open instead of leading elsewhere. Each directory opened is checked against the
inode recorded by the scan (a swap for another real directory is noticed too).

The walk never crosses a mount point of any kind. st_dev alone misses a bind
mount of the same filesystem, so the kernel's mount table is read first (mount
points below the root, directories and single files alike, are passed over and
noted with what is mounted there), and every directory opened must lie on the
root's own mount (its mount id), which also catches a mount made after the table
was read.

Names are the kernel's bytes: os.listdir on a descriptor gives them as
surrogate-escaped str, which goes back to the kernel byte for byte. Only
shown() turns a name into text for people, and only records and messages use it.

The one window left is a directory *moved* elsewhere between being opened and
a file in it being unlinked; that needs write access to the tree's own
directories, which is the owner's, not an attacker's.

A big tree is walked by two processes: the walk lists the top of the tree
breadth first until a level holds UNITS directories, then walks those subtrees
one after another, and once it has met HELPER_FROM files, if the machine has
a core to spare (HELPER_IDLE), it starts a helper process (this module, in a
fresh `python -I -S`) that takes subtrees from the same queue. The helper is
handed the root's open descriptor (no path is resolved again), reaches each
subtree from it as the removal does (component by component, O_NOFOLLOW, each
the inode recorded, on the root's mount) and runs the same _Walk code with the
same mount table, so every check above holds in it too. A second process
rather than a thread: the walk is one lstat per name, and threads would pass
the one GIL back and forth around every call (measured: no faster than one).
If the helper fails, the walk does its subtrees itself.
"""

import marshal
import math
import os
import stat
import struct
import sys
import threading
import time
from array import array
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import groupby
from operator import itemgetter
from typing import Literal, NamedTuple

from . import mounts, openfiles

# st_mode's file-type bits, compared inline in the walk's loop (stat.S_ISREG() is a function call per file)
_S_IFMT, _S_IFREG = 0o170000, stat.S_IFREG
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A file is opened only to ask about it: never through a symlink, never waiting for another's lease.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
# Removal runs in this many threads once a run has enough files (PARALLEL_FROM): unlinks wait on the disk's
# journal, and with the GIL released there the other thread checks and removes in another directory.
THREADS, PARALLEL_FROM = 2, 2000
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# The walk's helper process (see the module's docstring): started once this many files are met, with subtrees
# cut at the first level of UNITS directories or more, in at most MAX_CHUNKS queue records of 8 bytes (2 KiB:
# one atomic write that never blocks, even on a pipe shrunk to one page).
HELPER_FROM, UNITS, MAX_CHUNKS = 10_000, 8, 256
# ... and only if the machine left HELPER_IDLE CPUs idle on average since the walk began (judged after at least
# HELPER_WINDOW seconds): on cores that are all taken, a helper is one more process sharing them, and its start
# and hand-over make the walk slower (measured at load 8-10 on 2 cores, a 200,000-file dry run: 2.4-2.6 s with a
# helper, 1.7-1.9 s without).
HELPER_IDLE, HELPER_WINDOW = 0.5, 0.05
_TICK = os.sysconf("SC_CLK_TCK")
HELPER_PYTHON = sys.executable
HELPER_BASE = 1 << 40  # the helper numbers its directories from here: its records need no renumbering
_CHUNK = struct.Struct("=II")  # a queue record: a range of the units list
Helper = Literal["auto", "off", "all"]


class Skip:
    """Why something below the root was not considered (counted per reason)."""

    SYMLINK = "symlink"
    MOUNT = "mount_point"
    OTHER_FS = "other_filesystem"  # another st_dev on the root's own mount (a btrfs subvolume)
    SPECIAL = "not_a_regular_file"
    PROTECTED = "running_engine"
    UNREADABLE = "unreadable"


def shown(name: str) -> str:
    """A name as one line of text that any page, log or message can hold, and no two names share.

    A byte that is not UTF-8 becomes \\xNN (NN 80-ff), an ASCII control character \\n, \\t or \\xNN (NN below
    80), any other unprintable character (a bidi override, a line separator) \\uNNNN, and a backslash \\\\.
    """
    if name.isprintable() and "\\" not in name:
        return name
    return "".join(_shown_char(char) for char in name)


def _shown_char(char: str) -> str:
    code = ord(char)
    if char in _NAMED:
        return _NAMED[char]
    if 0xDC80 <= code <= 0xDCFF:  # os.fsdecode keeps an undecodable byte as this surrogate
        return f"\\x{code - 0xDC00:02x}"
    if char.isprintable():
        return char
    if code < 0x80:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


class Dir(NamedTuple):  # a tuple, not a frozen dataclass: a walk makes one per directory, 1,000s of them
    parent: int  # index into Scan.dirs; -1 for the root
    name: str
    ino: int
    relpath: str


@dataclass
class Scan:
    """What a walk found: directories and regular files, with the stat data decisions need.

    A walk given a cutoff lists only the files old enough for it (age stamp at or before it) and counts the
    younger ones (`young`); their bytes are in total_bytes all the same.
    """

    root: str
    dev: int
    mount_id: int = 0
    dirs: dict[int, Dir] = field(default_factory=dict)  # by index: 0 the root, HELPER_BASE up the helper's
    # (dir index, name, ino, bytes on disk, age stamp = max(mtime, ctime))
    files: list[tuple[int, str, int, int, float]] = field(default_factory=list)
    young: int = 0  # regular files newer than the walk's cutoff: counted, not listed
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)
    notes: list[tuple[str, str]] = field(default_factory=list)  # (relpath, why) of what was passed over
    total_bytes: int = 0

    @property
    def count(self) -> int:
        """Every regular file of the root's own, listed or not."""
        return len(self.files) + self.young

    def relpath(self, dir_index: int, name: str) -> str:
        parent = self.dirs[dir_index].relpath
        return f"{parent}/{name}" if parent else name

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


def open_root(root: str) -> int:
    """The descriptor of the absolute directory root, reached without following any symlink.

    Raises OSError if it is missing or not a directory, or if any component is a symlink (ELOOP).
    """
    fd = os.open("/", DIR_FLAGS)
    try:
        for part in root.split("/"):
            if part:
                child = os.open(part, DIR_FLAGS, dir_fd=fd)
                os.close(fd)
                fd = child
    except BaseException:
        os.close(fd)
        raise
    return fd


def scan(root: str, protected: set[str] = frozenset(), older_than: float = math.inf, *,
         helper: Helper = "auto") -> Scan:
    """Every regular file under root on root's own mount (relative paths in `protected` are not entered).

    Files whose age stamp is after older_than are only counted and measured: a cleanup never needs them one by
    one, and not building their records is a good part of what a 200,000-file walk costs.

    helper: "auto" starts the helper process once the tree proves big, "off" never, "all" at once and leaves
    every subtree to it (tests use "all" to run every check in the helper).
    """
    began = time.monotonic(), _idle_seconds()
    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        result = Scan(root=root, dev=st.st_dev, mount_id=mounts.mount_id(root_fd))
        mounted = {parent: {name: mount.describe() for name, mount in here.items()}
                   for parent, here in mounts.below(root).items()}
        walk = _Walk(result, protected, mounted, older_than, first_index=0)
        walk.add_dir(-1, "", st.st_ino, "")
        chain = _Chain(result, root_fd)
        try:
            units = walk.split(chain)
            if units:
                _share(walk, chain, units, helper if HELPER_PYTHON else "off", began)
        finally:
            chain.close()
    finally:
        os.close(root_fd)
    return result


class _Walk:
    def __init__(self, result: Scan, protected, mounted: dict[str, dict[str, str]], older_than: float,
                 first_index: int):
        self.result, self.protected, self.mounted, self.older_than = result, protected, mounted, older_than
        self.next_index = first_index

    def add_dir(self, parent: int, name: str, ino: int, relpath: str) -> int:
        index = self.next_index
        self.next_index += 1
        self.result.dirs[index] = Dir(parent, name, ino, relpath)
        return index

    def split(self, chain: "_Chain") -> list[int]:
        """Lists the top of the tree breadth first until a level holds UNITS directories or more, and returns
        that level: directories opened, checked and recorded, not yet listed; the subtrees the walk shares out.
        """
        level = [0]
        while level and len(level) < UNITS:
            below = []
            for index in level:
                fd = self.reopen(chain, index)
                if fd is None:
                    continue
                base = self.result.dirs[index].relpath
                for name in self.list_dir(fd, index):
                    opened = self.enter(fd, index, base, name)
                    if opened:
                        os.close(opened[0])
                        below.append(opened[1])
            level = below
        return level

    def walk_unit(self, chain: "_Chain", index: int) -> None:
        """The whole subtree of a directory recorded by split()."""
        fd = self.reopen(chain, index)
        if fd is not None:
            self.walk(fd, index)

    def reopen(self, chain: "_Chain", index: int) -> int | None:
        """A recorded directory's descriptor, reached again from the root; None (an error noted) if it moved."""
        try:
            return chain.dir_fd(index)
        except OSError as exc:
            self.result.errors.append((shown(self.result.dirs[index].relpath or "."), exc.strerror or str(exc)))
            return None

    def walk(self, fd: int, index: int) -> None:
        base = self.result.dirs[index].relpath
        for name in self.list_dir(fd, index):
            opened = self.enter(fd, index, base, name)
            if opened:
                child, child_index = opened
                try:
                    self.walk(child, child_index)
                finally:
                    os.close(child)

    def list_dir(self, fd: int, index: int) -> list[str]:
        """Counts, measures and (if old enough) lists the files of directory index (open as fd); returns the
        names of its subdirectories."""
        result = self.result
        base = result.dirs[index].relpath
        try:
            names = os.listdir(fd)
        except OSError as exc:
            result.errors.append((shown(base or "."), exc.strerror or str(exc)))
            return []
        mounted_here = self.mounted.get(base)
        if mounted_here:  # the table's mount points in this directory: noted, never stat'ed or entered
            names = self.drop_mounts(base, names, mounted_here)
        subdirs, size, young = [], 0, 0
        add, dev, older_than, lstat = result.files.append, result.dev, self.older_than, os.lstat
        for name in names:  # the hot loop: one fstatat per name, nothing else that calls the kernel
            try:
                st = lstat(name, dir_fd=fd)
            except OSError as exc:
                result.errors.append((shown(f"{base}/{name}" if base else name), exc.strerror or str(exc)))
                continue
            if st.st_mode & _S_IFMT != _S_IFREG or st.st_dev != dev:
                self.not_a_file(name, st, subdirs)
                continue
            blocks = st.st_blocks
            size += blocks
            # Age counts ctime too: a file renamed or chmod'ed recently (or unpacked with old mtimes) is in use.
            mtime, ctime = st.st_mtime, st.st_ctime
            age = mtime if mtime > ctime else ctime
            if age <= older_than:
                add((index, name, st.st_ino, blocks * 512, age))
            else:
                young += 1
        result.total_bytes += size * 512
        result.young += young
        return subdirs

    def drop_mounts(self, base: str, names: list[str], mounted_here: dict[str, str]) -> list[str]:
        """names without the mount points among them (directories and single files alike), each noted."""
        for name in names:
            if name in mounted_here:
                self.note_mount(base, name, mounted_here[name])
        return [name for name in names if name not in mounted_here]

    def not_a_file(self, name: str, st: os.stat_result, subdirs: list[str]) -> None:
        """A directory joins subdirs; anything else that is not a file of the root's own is counted."""
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
        elif stat.S_ISLNK(st.st_mode):
            self.result.skip(Skip.SYMLINK)
        elif not stat.S_ISREG(st.st_mode):
            self.result.skip(Skip.SPECIAL)
        else:
            self.result.skip(Skip.OTHER_FS)

    def enter(self, fd: int, index: int, base: str, name: str) -> tuple[int, int] | None:
        """Opens subdirectory name of directory index (open as fd) and records it: (its descriptor, its index),
        or None when it is not to be walked (protected, another mount or filesystem, gone: counted or noted)."""
        result = self.result
        relpath = f"{base}/{name}" if base else name
        if relpath in self.protected:
            result.skip(Skip.PROTECTED)
            return None
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: it became a symlink since it was listed.
            result.errors.append((shown(relpath), exc.strerror or str(exc)))
            return None
        try:
            st = os.fstat(child)
            if mounts.mount_id(child) != result.mount_id:
                self.note_mount(base, name, "mount made during the run")
            elif st.st_dev != result.dev:
                result.skip(Skip.OTHER_FS)
            else:
                return child, self.add_dir(index, name, st.st_ino, relpath)
        except BaseException:
            os.close(child)
            raise
        os.close(child)
        return None

    def note_mount(self, base: str, name: str, what: str) -> None:
        self.result.skip(Skip.MOUNT)
        self.result.notes.append((shown(f"{base}/{name}" if base else name), f"{what}: not entered"))


class _Chain:
    """Descriptors of a scan's directories, each reached from the root's descriptor component by component.

    Every directory opened must still be the inode the scan recorded, on the root's filesystem and mount. The
    descriptors from the root down to the last directory asked for are kept (callers go directory by
    directory); the root's own descriptor belongs to the caller.
    """

    def __init__(self, scan_result: Scan, root_fd: int):
        self.scan = scan_result
        self._stack: list[tuple[int, int]] = [(0, root_fd)]  # (dir index, fd) from the root down

    def close(self) -> None:
        for _, fd in self._stack[1:]:
            os.close(fd)
        del self._stack[1:]

    def dir_fd(self, index: int) -> int:
        """The descriptor of scanned directory `index`; raises OSError if it moved or changed."""
        if self._stack[-1][0] == index:
            return self._stack[-1][1]  # the directory of the previous file (files are removed directory by directory)
        chain = []
        while index != -1:
            chain.append(index)
            index = self.scan.dirs[index].parent
        chain.reverse()
        keep = 0
        while keep < len(self._stack) and keep < len(chain) and self._stack[keep][0] == chain[keep]:
            keep += 1
        keep = max(keep, 1)  # the root's descriptor stays
        for _, fd in self._stack[keep:]:
            os.close(fd)
        del self._stack[keep:]
        for index in chain[keep:]:
            d = self.scan.dirs[index]
            fd = os.open(d.name, DIR_FLAGS, dir_fd=self._stack[-1][1])
            st = os.fstat(fd)
            if st.st_ino != d.ino or st.st_dev != self.scan.dev or mounts.mount_id(fd) != self.scan.mount_id:
                os.close(fd)
                raise OSError(f"{shown(d.relpath)} was replaced (or mounted over) during the run")
            self._stack.append((index, fd))
        return self._stack[-1][1]


def _share(walk: _Walk, chain: _Chain, units: list[int], helper: Helper,
           began: tuple[float, float | None]) -> None:
    """Walks the subtrees of units, with the helper process taking some (or, with "all", every one) of them.

    The queue is a pipe holding one record per chunk of units, written whole before anyone reads: whoever
    reads a record walks its chunk. What the helper took and did not bring back (it failed) is walked here.
    """
    size = -(-len(units) // MAX_CHUNKS)
    chunks = [(start, min(start + size, len(units))) for start in range(0, len(units), size)]
    queue, writer = os.pipe()
    started = None
    try:
        os.write(writer, b"".join(_CHUNK.pack(*chunk) for chunk in chunks))  # < PIPE_BUF: whole, never blocks
        os.close(writer)
        done: set[int] = set()
        if helper == "all":
            started = _Started(walk, chain, units, chunks, queue)
        else:
            result = walk.result
            while record := os.read(queue, _CHUNK.size):
                start, end = _CHUNK.unpack(record)
                for index in units[start:end]:
                    walk.walk_unit(chain, index)
                done.add(start)
                if (started is None and helper == "auto" and len(result.files) + result.young >= HELPER_FROM
                        and len(chunks) - len(done) >= 2 and _spare(began)):
                    started = _Started(walk, chain, units, chunks, queue)
        if started:
            done |= started.collect(walk.result)
        for start, end in chunks:  # the helper's, when it failed
            if start not in done:
                for index in units[start:end]:
                    walk.walk_unit(chain, index)
    finally:
        os.close(queue)
        if started:
            started.stop()


def _idle_seconds() -> float | None:
    """Idle time of all CPUs together since boot (/proc/stat: idle and iowait), None if it cannot be read."""
    try:
        with open("/proc/stat", "rb") as fh:
            fields = fh.readline().split()
        return (int(fields[4]) + int(fields[5])) / _TICK
    except (OSError, ValueError, IndexError):
        return None


def _spare(began: tuple[float, float | None]) -> bool:
    """Whether the machine left HELPER_IDLE CPUs idle on average since began (monotonic, idle seconds); False
    until HELPER_WINDOW has passed (asked again after the next subtree), True when /proc/stat cannot tell."""
    since, idle_then = began
    elapsed = time.monotonic() - since
    if elapsed < HELPER_WINDOW:
        return False
    idle_now = _idle_seconds()
    if idle_then is None or idle_now is None:
        return True
    return (idle_now - idle_then) / elapsed >= HELPER_IDLE


_BOOT = """import sys, types
package, lib = sys.argv[1], sys.argv[2]
parts = package.split(".")
for n in range(1, len(parts) + 1):  # the packages as bare namespaces: their __init__ (Django, Celery) not run
    module = types.ModuleType(".".join(parts[:n]))
    module.__path__ = [lib.rsplit("/", len(parts) - n)[0]]
    sys.modules[module.__name__] = module
__import__(package + ".safewalk", fromlist=["_"])._helper_main(sys.argv[3:])
"""


class _Started:
    """The helper process: started with the root's descriptor, the queue and what it needs of the scan."""

    def __init__(self, walk: _Walk, chain: _Chain, units: list[int], chunks: list[tuple[int, int]], queue: int):
        result = walk.result
        needed = set()  # the units and the directories above them: what the helper must reach them through
        for index in units:
            while index != -1 and index not in needed:
                needed.add(index)
                index = result.dirs[index].parent
        payload = marshal.dumps((result.root, result.dev, result.mount_id, walk.older_than, set(walk.protected),
                                 walk.mounted, [(i, *result.dirs[i]) for i in sorted(needed)], units))
        import subprocess  # here: the helper process itself starts faster without it (and without logging)

        self.proc = None
        holder = os.memfd_create("safewalk-helper", os.MFD_CLOEXEC)  # read at the helper's pace: no blocking
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(holder, view):]
            os.lseek(holder, 0, os.SEEK_SET)
            root_fd = chain._stack[0][1]
            self.proc = subprocess.Popen(
                [HELPER_PYTHON, "-I", "-S", "-c", _BOOT, __package__, os.path.dirname(os.path.abspath(__file__)),
                 str(root_fd), str(queue), str(holder)],
                pass_fds=(root_fd, queue, holder), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE)
        except OSError as exc:
            _log().warning("the walk's helper process did not start (%s): walking alone", exc)
        finally:
            os.close(holder)

    def collect(self, result: Scan) -> set[int]:
        """Adds what the helper found to result; returns the chunks (by start) it walked, none if it failed."""
        if self.proc is None:
            return set()
        out, err = self.proc.communicate()  # both pipes at once: a long stderr cannot stall the helper
        if self.proc.returncode or not out:
            _log().warning("the walk's helper process failed (exit %s): walking its part here; %s",
                        self.proc.returncode, err[-2000:].decode(errors="replace"))
            return set()
        done, dirs, columns, young, total, skipped, errors, notes = marshal.loads(out)
        result.dirs.update((index, Dir(*rest)) for index, *rest in dirs)
        indices, names, inos, sizes, ages = columns
        result.files += zip(_array("q", indices), names.split("\0") if names else (), _array("q", inos),
                            _array("q", sizes), _array("d", ages), strict=True)
        result.young += young
        result.total_bytes += total
        for why, count in skipped.items():
            result.skip(why, count)
        result.errors += errors
        result.notes += notes
        return set(done)

    def stop(self) -> None:
        """Ends the helper if it is still running (the caller was interrupted)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


def _log():
    import logging

    return logging.getLogger(__name__)


def _array(kind: str, raw: bytes) -> array:
    values = array(kind)
    values.frombytes(raw)
    return values


def _helper_main(argv: list[str]) -> None:
    """The helper process: walks the chunks it takes from the queue; writes what it found to stdout."""
    root_fd, queue, holder = map(int, argv)
    with os.fdopen(holder, "rb") as fh:
        root, dev, mount_id, older_than, protected, mounted, dirs, units = marshal.loads(fh.read())
    result = Scan(root=root, dev=dev, mount_id=mount_id)
    result.dirs = {index: Dir(*rest) for index, *rest in dirs}
    walk = _Walk(result, protected, mounted, older_than, first_index=HELPER_BASE)
    chain = _Chain(result, root_fd)
    done = []
    while record := os.read(queue, _CHUNK.size):
        start, end = _CHUNK.unpack(record)
        for index in units[start:end]:
            walk.walk_unit(chain, index)
        done.append(start)
    chain.close()
    files = result.files
    # Columns, not tuples: the main process rebuilds 100,000s of tuples from arrays in C (marshal's tuples of
    # floats load three times slower). Names cannot hold NUL; marshal keeps their surrogate escapes.
    columns = (array("q", [f[0] for f in files]).tobytes(), "\0".join([f[1] for f in files]),
               array("q", [f[2] for f in files]).tobytes(), array("q", [f[3] for f in files]).tobytes(),
               array("d", [f[4] for f in files]).tobytes())
    new_dirs = [(index, *d) for index, d in result.dirs.items() if index >= HELPER_BASE]
    sys.stdout.buffer.write(marshal.dumps((done, new_dirs, columns, result.young, result.total_bytes,
                                           result.skipped, result.errors, result.notes)))


class Held:
    """Why the Remover kept a chosen file at the last moment."""

    CHANGED = "changed_during_run"  # no longer the regular file the scan saw, or younger now
    OPEN = "open"  # the kernel says some process has it open or mapped
    UNKNOWN = "open_unknown"  # the kernel could not be asked, and some process could not be looked at


class Remover:
    """Unlink files found by a scan, each relative to a directory re-opened from the root.

    Directories are re-opened component by component (O_NOFOLLOW) and each
    must still be the inode the scan saw, on the root's mount; a file must still be the same
    regular file, no younger than when it was chosen. Right before the
    unlink the kernel is asked whether anyone has the file open or mapped
    (openfiles.unused: a write lease). `hook(relpath)` is called right before
    each unlink (tests use it to swap directories).

    all_seen says whether the open-file check read every process: when it did
    not, a file the kernel cannot be asked about is kept.
    """

    def __init__(self, scan_result: Scan, hook: Callable[[str], None] | None = None, *, all_seen: bool = True):
        self.scan = scan_result
        self.hook = hook
        self.all_seen = all_seen
        self._root_fd: int | None = None
        self._chain: _Chain | None = None

    def __enter__(self):
        fd = open_root(self.scan.root)
        if os.fstat(fd).st_ino != self.scan.dirs[0].ino:
            os.close(fd)
            raise OSError(f"{shown(self.scan.root)} was replaced during the run")
        self._root_fd, self._chain = fd, _Chain(self.scan, fd)
        return self

    def __exit__(self, *exc):
        if self._chain is not None:
            self._chain.close()
            os.close(self._root_fd)
        self._root_fd = self._chain = None

    def dir_fd(self, index: int) -> int:
        """The descriptor of scanned directory `index`; raises OSError if it moved or changed."""
        return self._chain.dir_fd(index)

    def remove_dir(self, dir_index: int, files: list[tuple], not_after: float
                   ) -> tuple[list[tuple], dict[str, int], list[tuple[tuple, OSError]]]:
        """Remove files (scan tuples: dir index, name, ino, ...) of the one directory dir_index.

        Returns (removed, {Held reason: count}, [(file, OSError)]); a file already gone counts nowhere. Each
        file goes through the same steps as ever: stat before opening (a name swapped for a device or FIFO
        is never opened), open (O_NOFOLLOW|O_NONBLOCK), the same old regular file, the kernel's lease, close,
        unlink. They run in one flat loop here because for a 100,000-file run the method calls per file
        cost more than any one of those system calls.
        """
        removed, held, failed = [], {}, []
        try:
            fd = self.dir_fd(dir_index)
        except OSError as exc:
            return removed, held, [(f, exc) for f in files]
        hook, all_seen, relpath = self.hook, self.all_seen, self.scan.relpath
        lstat, fstat, open_, close, unlink, unused = os.lstat, os.fstat, os.open, os.close, os.unlink, openfiles.unused
        for f in files:
            name, ino = f[1], f[2]
            try:
                st = lstat(name, dir_fd=fd)
                if (st.st_mode & _S_IFMT != _S_IFREG or st.st_ino != ino or st.st_mtime > not_after
                        or st.st_ctime > not_after):
                    why = Held.CHANGED
                else:
                    why = None
                    try:
                        file_fd = open_(name, FILE_FLAGS, dir_fd=fd)
                    except BlockingIOError:
                        why = Held.OPEN  # another process holds a lease on it: in use
                    except PermissionError:  # not readable by us: the kernel cannot be asked
                        if not all_seen:
                            why = Held.UNKNOWN
                    else:
                        try:
                            st = fstat(file_fd)
                            if (st.st_mode & _S_IFMT != _S_IFREG or st.st_ino != ino or st.st_mtime > not_after
                                    or st.st_ctime > not_after):
                                why = Held.CHANGED
                            else:
                                free = unused(file_fd)
                                if free is False:
                                    why = Held.OPEN
                                elif free is None and not all_seen:
                                    why = Held.UNKNOWN
                        finally:
                            # Before the unlink: an open file's unlink costs ext4 two more journal updates.
                            close(file_fd)
                if why:
                    held[why] = held.get(why, 0) + 1
                    continue
                if hook:
                    hook(relpath(dir_index, name))
                unlink(name, dir_fd=fd)
            except FileNotFoundError:
                continue  # gone already: someone else cleaned it
            except OSError as exc:
                failed.append((f, exc))
                continue
            removed.append(f)
        return removed, held, failed


def remove_all(scan_result: Scan, files: list[tuple], not_after: float, *, hook: Callable[[str], None] | None = None,
               all_seen: bool = True, threads: int | None = None
               ) -> tuple[list[tuple], dict[str, int], list[tuple[tuple, OSError]]]:
    """Remove files (scan tuples), directory by directory; returns what Remover.remove_dir returns, for all.

    With many files, THREADS threads take the directories in turns, each with its own Remover (its own
    descriptors, opened from the root and checked like any): every file still goes through every step of
    remove_dir, only two directories are worked on at once. A directory is never shared between threads.
    """
    # A stable sort: the scan's order is already directory by directory, an oldest-first order is not.
    groups = [(index, list(group)) for index, group in groupby(sorted(files, key=itemgetter(0)), key=itemgetter(0))]
    if threads is None:
        threads = THREADS if len(files) >= PARALLEL_FROM else 1
    threads = max(1, min(threads, len(groups)))
    results: list[tuple] = []
    todo = iter(groups)  # shared: a list iterator hands each directory to exactly one thread
    # Set when the caller is interrupted (a task's time limit lands in its join): the threads stop at the next
    # directory instead of removing on after the run has ended and released its root's lock.
    stop = threading.Event()

    def work() -> None:
        removed, held, failed = [], {}, []
        try:
            with Remover(scan_result, hook=hook, all_seen=all_seen) as remover:
                for index, group in todo:
                    if stop.is_set():
                        break
                    gone, kept, bad = remover.remove_dir(index, group, not_after)
                    removed += gone
                    failed += bad
                    for why, count in kept.items():
                        held[why] = held.get(why, 0) + count
        except BaseException as exc:  # re-raised in the caller's thread
            results.append(exc)
            return
        results.append((removed, held, failed))

    if threads == 1:
        work()
    else:
        workers = [threading.Thread(target=work, name=f"cleanup-remove-{n}") for n in range(threads)]
        for worker in workers:
            worker.start()
        try:
            for worker in workers:
                worker.join()
        finally:
            stop.set()
            for worker in workers:
                worker.join()  # each ends its directory (an exception here left them running without a lock)
    removed, held, failed = [], {}, []
    for result in results:
        if isinstance(result, BaseException):
            raise result
        removed += result[0]
        failed += result[2]
        for why, count in result[1].items():
            held[why] = held.get(why, 0) + count
    return removed, held, failed
