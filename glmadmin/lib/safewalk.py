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
"""

import math
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from . import mounts, openfiles

# st_mode's file-type bits, compared inline in the walk's loop (stat.S_ISREG() is a function call per file)
_S_IFMT, _S_IFREG = 0o170000, stat.S_IFREG
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# A file is opened only to ask about it: never through a symlink, never waiting for another's lease.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}


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
    dirs: list[Dir] = field(default_factory=list)
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


def scan(root: str, protected: set[str] = frozenset(), older_than: float = math.inf) -> Scan:
    """Every regular file under root on root's own mount (relative paths in `protected` are not entered).

    Files whose age stamp is after older_than are only counted and measured: a cleanup never needs them one by
    one, and not building their records is a good part of what a 200,000-file walk costs.
    """
    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        result = Scan(root=root, dev=st.st_dev, mount_id=mounts.mount_id(root_fd))
        result.dirs.append(Dir(-1, "", st.st_ino, ""))
        _Walk(result, protected, mounts.below(root), older_than).walk(root_fd, 0)
    finally:
        os.close(root_fd)
    return result


class _Walk:
    def __init__(self, result: Scan, protected, mounted: dict, older_than: float):
        self.result, self.protected, self.mounted, self.older_than = result, protected, mounted, older_than

    def walk(self, fd: int, index: int) -> None:
        result = self.result
        base = result.dirs[index].relpath
        try:
            names = os.listdir(fd)
        except OSError as exc:
            result.errors.append((shown(base or "."), exc.strerror or str(exc)))
            return
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
                self.not_a_file(base, name, st, subdirs)
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
        for name in subdirs:
            self.enter(fd, index, base, name)

    def drop_mounts(self, base: str, names: list[str], mounted_here: dict) -> list[str]:
        """names without the mount points among them (directories and single files alike), each noted."""
        for name in names:
            if name in mounted_here:
                self.note_mount(base, name, mounted_here[name].describe())
        return [name for name in names if name not in mounted_here]

    def not_a_file(self, base: str, name: str, st: os.stat_result, subdirs: list[str]) -> None:
        """A directory joins subdirs; anything else that is not a file of the root's own is counted."""
        if stat.S_ISDIR(st.st_mode):
            subdirs.append(name)
        elif stat.S_ISLNK(st.st_mode):
            self.result.skip(Skip.SYMLINK)
        elif not stat.S_ISREG(st.st_mode):
            self.result.skip(Skip.SPECIAL)
        else:
            self.result.skip(Skip.OTHER_FS)

    def enter(self, fd: int, index: int, base: str, name: str) -> None:
        result = self.result
        relpath = f"{base}/{name}" if base else name
        if relpath in self.protected:
            result.skip(Skip.PROTECTED)
            return
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: it became a symlink since scandir saw it.
            result.errors.append((shown(relpath), exc.strerror or str(exc)))
            return
        try:
            st = os.fstat(child)
            if mounts.mount_id(child) != result.mount_id:
                self.note_mount(base, name, "mount made during the run")
            elif st.st_dev != result.dev:
                result.skip(Skip.OTHER_FS)
            else:
                result.dirs.append(Dir(index, name, st.st_ino, relpath))
                self.walk(child, len(result.dirs) - 1)
        finally:
            os.close(child)

    def note_mount(self, base: str, name: str, what: str) -> None:
        self.result.skip(Skip.MOUNT)
        self.result.notes.append((shown(f"{base}/{name}" if base else name), f"{what}: not entered"))


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
        self._stack: list[tuple[int, int]] = []  # (dir index, fd) from the root down

    def __enter__(self):
        fd = open_root(self.scan.root)
        if os.fstat(fd).st_ino != self.scan.dirs[0].ino:
            os.close(fd)
            raise OSError(f"{shown(self.scan.root)} was replaced during the run")
        self._stack = [(0, fd)]
        return self

    def __exit__(self, *exc):
        for _, fd in self._stack:
            os.close(fd)
        self._stack = []

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

    def unlink(self, dir_index: int, name: str, ino: int, not_after: float) -> str | None:
        """Remove one file; returns why it was kept instead (a Held reason), or None once it is gone.

        Raises OSError when the directory or the unlink fails (the caller records it).
        """
        fd = self.dir_fd(dir_index)
        # Stat before opening: a name swapped for a device or FIFO is never opened.
        if not _same_file(os.stat(name, dir_fd=fd, follow_symlinks=False), ino, not_after):
            return Held.CHANGED
        held = self._held(fd, name, ino, not_after)
        if held:
            return held
        if self.hook:
            self.hook(self.scan.relpath(dir_index, name))
        os.unlink(name, dir_fd=fd)
        return None

    def _held(self, dir_fd: int, name: str, ino: int, not_after: float) -> str | None:
        """Why the kernel says the file must stay after all, or None."""
        try:
            fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
        except BlockingIOError:
            return Held.OPEN  # another process holds a lease on it: in use
        except PermissionError:
            return None if self.all_seen else Held.UNKNOWN  # not readable by us: the kernel cannot be asked
        try:
            if not _same_file(os.fstat(fd), ino, not_after):
                return Held.CHANGED
            unused = openfiles.unused(fd)
        finally:
            os.close(fd)  # before the unlink: an open file's unlink costs ext4 two more journal updates
        if unused is False:
            return Held.OPEN
        return Held.UNKNOWN if unused is None and not self.all_seen else None


def _same_file(st: os.stat_result, ino: int, not_after: float) -> bool:
    return stat.S_ISREG(st.st_mode) and st.st_ino == ino and max(st.st_mtime, st.st_ctime) <= not_after
