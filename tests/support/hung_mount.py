"""A real FUSE filesystem that never answers, mounted without libfuse or fusermount.

The test opens /dev/fuse and mounts it with mount(2); the kernel then sends its
INIT request and every later request (statvfs on the mount included) waits for
an answer, like a stale NFS or FUSE mount. `answer()` starts serving (INIT,
then STATFS with the usage asked for): the hung calls return, as when a server
comes back. The fixture always ends the connection (closing the device aborts
every waiting request) and detaches the mount, whatever the test did.

    from tests.support import hung_mount as hung_mount_support
    hung_mount = hung_mount_support.hung_mount  # the fixture, in the test module
"""

import ctypes
import errno
import os
import select
import struct
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

SOURCE = "glmadmin-hang"
MNT_DETACH = 2
# Opcodes and layouts from linux/fuse.h (protocol 7.x).
FUSE_FORGET, FUSE_STATFS, FUSE_INIT, FUSE_INTERRUPT, FUSE_BATCH_FORGET = 2, 17, 26, 36, 42
IN_HEADER = struct.Struct("<IIQQ")  # len, opcode, unique, nodeid (then uid, gid, pid, ...: 40 bytes)
IN_HEADER_SIZE = 40
OUT_HEADER = struct.Struct("<IiQ")  # len, error, unique
NO_REPLY = {FUSE_FORGET, FUSE_INTERRUPT, FUSE_BATCH_FORGET}
BLOCK = 4096

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p]
_libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def unavailable() -> str | None:
    """Why this machine cannot mount one, or None."""
    if os.geteuid() != 0:
        return "mounting a FUSE filesystem needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this machine"
    return None


class HungMount:
    def __init__(self, path: Path):
        self.path = path
        self.total_blocks = 1000
        self.free_blocks = 1000
        self._fd: int | None = None
        self._stop = threading.Event()
        self._server: threading.Thread | None = None
        self._fd_lock = threading.Lock()

    def mount(self) -> None:
        self._fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
        options = f"fd={self._fd},rootmode=40000,user_id=0,group_id=0".encode()
        if _libc.mount(SOURCE.encode(), str(self.path).encode(), b"fuse", 0, options) != 0:
            code = ctypes.get_errno()
            os.close(self._fd)
            self._fd = None
            raise OSError(code, f"mount fuse on {self.path}: {os.strerror(code)}")

    def answer(self, percent: float) -> None:
        """Start answering the kernel, reporting `percent` in use: the waiting calls return."""
        self.free_blocks = round(self.total_blocks * (100 - percent) / 100)
        self._server = threading.Thread(target=self._serve, name="fuse server", daemon=True)
        self._server.start()

    def _serve(self) -> None:
        poller = select.poll()
        poller.register(self._fd, select.POLLIN)
        while not self._stop.is_set():
            if not poller.poll(100):
                continue
            try:
                request = os.read(self._fd, 1 << 20)
            except OSError as exc:
                if exc.errno in (errno.ENOENT, errno.EINTR, errno.EAGAIN):
                    continue  # the request was interrupted before we read it
                return  # ENODEV: the connection ended
            _length, opcode, unique, _node = IN_HEADER.unpack_from(request)
            if opcode in NO_REPLY:
                continue
            self._reply(unique, *self._handle(opcode, request))

    def _handle(self, opcode: int, request: bytes) -> tuple[int, bytes]:
        if opcode == FUSE_INIT:
            _major, _minor, readahead, _flags = struct.unpack_from("<IIII", request, IN_HEADER_SIZE)
            # fuse_init_out: major, minor, max_readahead, flags, max_background, congestion_threshold,
            # max_write, time_gran, max_pages, map_alignment, flags2, max_stack_depth, unused[6]
            return 0, struct.pack("<IIIIHHIIHHII", 7, 31, readahead, 0, 0, 0, BLOCK, 1, 0, 0, 0, 0) + bytes(24)
        if opcode == FUSE_STATFS:
            # fuse_kstatfs: blocks, bfree, bavail, files, ffree, bsize, namelen, frsize, padding, spare[6]
            total, free = self.total_blocks, self.free_blocks
            return 0, struct.pack("<QQQQQIIII", total, free, free, 100, 50, BLOCK, 255, BLOCK, 0) + bytes(24)
        return -errno.ENOSYS, b""

    def _reply(self, unique: int, error: int, body: bytes) -> None:
        try:
            os.write(self._fd, OUT_HEADER.pack(OUT_HEADER.size + len(body), error, unique) + body)
        except OSError:
            pass  # the request was interrupted meanwhile (ENOENT) or the connection ended

    @contextmanager
    def ended_after(self, seconds: float):
        """Bound a block that would hang for good if the code under test waited on the mount: after `seconds`
        the connection ends and every waiting call fails (ENOTCONN), so the test fails instead of hanging."""
        timer = threading.Timer(seconds, self.end_connection)
        timer.daemon = True
        timer.start()
        try:
            yield
        finally:
            timer.cancel()

    def end_connection(self) -> None:
        with self._fd_lock:
            if self._fd is not None:
                os.close(self._fd)  # the last reference to the device: the kernel aborts the connection
                self._fd = None

    def close(self) -> None:
        """End the connection (every waiting call fails with ENOTCONN) and detach the mount."""
        self._stop.set()
        if self._server is not None:
            self._server.join(10)
        self.end_connection()
        if _libc.umount2(str(self.path).encode(), MNT_DETACH) != 0 and self.mounted():
            code = ctypes.get_errno()
            raise OSError(code, f"umount {self.path}: {os.strerror(code)}")

    def mounted(self) -> bool:
        with open("/proc/self/mountinfo") as mounts:
            return any(line.split()[4] == str(self.path) for line in mounts)


@pytest.fixture
def hung_mount(tmp_path):
    """A FUSE mount point that never answers (until .answer()); skipped without root or /dev/fuse."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    path = tmp_path / "hung"
    path.mkdir()
    mount = HungMount(path)
    mount.mount()
    try:
        yield mount
    finally:
        mount.close()
