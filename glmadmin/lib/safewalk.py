"""Walk a directory tree and remove files in it without ever leaving it.

Paths are never joined and re-resolved: every directory is opened relative to
its parent's file descriptor with O_NOFOLLOW|O_DIRECTORY, and files are
stat'ed and unlinked relative to their directory's descriptor (fstatat,
unlinkat). So a symlink is never followed, and a directory swapped for a
symlink during the run fails to open instead of leading elsewhere. Each
directory opened is checked against the inode recorded by the scan (a swap for
another real directory is noticed too) and against the root's device (the
walk never crosses into another filesystem mounted below the root).

The one window left is a directory *moved* elsewhere between being opened and
a file in it being unlinked; that needs write access to the tree's own
directories, which is the owner's, not an attacker's.
"""

import os
import stat
from collections.abc import Callable
from dataclasses import dataclass, field

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class Skip:
    """Why something below the root was not considered (counted per reason)."""

    SYMLINK = "symlink"
    OTHER_FS = "other_filesystem"
    SPECIAL = "not_a_regular_file"
    PROTECTED = "running_engine"
    UNREADABLE = "unreadable"


@dataclass(frozen=True)
class Dir:
    parent: int  # index into Scan.dirs; -1 for the root
    name: str
    ino: int
    relpath: str


@dataclass
class Scan:
    """What a walk found: directories and regular files, with the stat data decisions need."""

    root: str
    dev: int
    dirs: list[Dir] = field(default_factory=list)
    # (dir index, name, ino, bytes on disk, age stamp = max(mtime, ctime))
    files: list[tuple[int, str, int, int, float]] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)
    errors: list[tuple[str, str]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(f[3] for f in self.files)

    def relpath(self, dir_index: int, name: str) -> str:
        parent = self.dirs[dir_index].relpath
        return f"{parent}/{name}" if parent else name

    def skip(self, reason: str, count: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + count


def open_root(root: str) -> int:
    """The root's descriptor; raises OSError if it is missing, not a directory or a symlink."""
    return os.open(root, DIR_FLAGS)


def scan(root: str, protected: set[str] = frozenset()) -> Scan:
    """Every regular file under root (relative paths in `protected` are not entered)."""
    root_fd = open_root(root)
    try:
        st = os.fstat(root_fd)
        result = Scan(root=root, dev=st.st_dev)
        result.dirs.append(Dir(-1, "", st.st_ino, ""))
        _walk(root_fd, 0, result, protected)
    finally:
        os.close(root_fd)
    return result


def _walk(fd: int, index: int, result: Scan, protected) -> None:
    files = result.files
    base = result.dirs[index].relpath
    subdirs = []
    try:
        entries = os.scandir(fd)
    except OSError as exc:
        result.errors.append((base or ".", exc.strerror or str(exc)))
        return
    with entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                    continue
                if entry.is_symlink():
                    result.skip(Skip.SYMLINK)
                    continue
                st = entry.stat(follow_symlinks=False)
            except OSError as exc:
                result.errors.append((f"{base}/{entry.name}" if base else entry.name, exc.strerror or str(exc)))
                continue
            if not stat.S_ISREG(st.st_mode):
                result.skip(Skip.SPECIAL)
            elif st.st_dev != result.dev:
                result.skip(Skip.OTHER_FS)
            else:
                # Age counts ctime too: a file renamed or chmod'ed recently (or unpacked with old mtimes) is in use.
                files.append((index, entry.name, st.st_ino, st.st_blocks * 512,
                              st.st_mtime if st.st_mtime > st.st_ctime else st.st_ctime))
    for name in subdirs:
        relpath = f"{base}/{name}" if base else name
        if relpath in protected:
            result.skip(Skip.PROTECTED)
            continue
        try:
            child = os.open(name, DIR_FLAGS, dir_fd=fd)
        except OSError as exc:
            # ELOOP/ENOTDIR: it became a symlink since scandir saw it.
            result.errors.append((relpath, exc.strerror or str(exc)))
            continue
        try:
            st = os.fstat(child)
            if st.st_dev != result.dev:
                result.skip(Skip.OTHER_FS)
                continue
            result.dirs.append(Dir(index, name, st.st_ino, relpath))
            _walk(child, len(result.dirs) - 1, result, protected)
        finally:
            os.close(child)


class Remover:
    """Unlink files found by a scan, each relative to a directory re-opened from the root.

    Directories are re-opened component by component (O_NOFOLLOW) and each
    must still be the inode the scan saw; a file must still be the same
    regular file, no younger than when it was chosen. `hook(relpath)` is
    called right before each unlink (tests use it to swap directories).
    """

    def __init__(self, scan_result: Scan, hook: Callable[[str], None] | None = None):
        self.scan = scan_result
        self.hook = hook
        self._stack: list[tuple[int, int]] = []  # (dir index, fd) from the root down

    def __enter__(self):
        fd = open_root(self.scan.root)
        if os.fstat(fd).st_ino != self.scan.dirs[0].ino:
            os.close(fd)
            raise OSError(f"{self.scan.root} was replaced during the run")
        self._stack = [(0, fd)]
        return self

    def __exit__(self, *exc):
        for _, fd in self._stack:
            os.close(fd)
        self._stack = []

    def dir_fd(self, index: int) -> int:
        """The descriptor of scanned directory `index`; raises OSError if it moved or changed."""
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
            if st.st_ino != d.ino or st.st_dev != self.scan.dev:
                os.close(fd)
                raise OSError(f"{d.relpath} was replaced during the run")
            self._stack.append((index, fd))
        return self._stack[-1][1]

    def unlink(self, dir_index: int, name: str, ino: int, not_after: float) -> str | None:
        """Remove one file; returns why it was kept instead ("changed"), or None once it is gone.

        Raises OSError when the directory or the unlink fails (the caller records it).
        """
        fd = self.dir_fd(dir_index)
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if not stat.S_ISREG(st.st_mode) or st.st_ino != ino or max(st.st_mtime, st.st_ctime) > not_after:
            return "changed"
        if self.hook:
            self.hook(self.scan.relpath(dir_index, name))
        os.unlink(name, dir_fd=fd)
        return None
