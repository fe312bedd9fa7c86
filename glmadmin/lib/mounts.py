"""Mount points from the kernel's mount table, and the mount an open descriptor lies on.

st_dev cannot tell a bind mount of the same filesystem from an ordinary
directory: both carry the disk's device number. The kernel's table
(/proc/self/mountinfo) lists every mount point, bind mounts and mounts of
single files included, with the directory of the source filesystem that each
one shows. /proc/self/fdinfo/FD gives the mount id of an open descriptor, so a
walk can also notice a mount made after it read the table; statx() gives the
same id in one system call (Linux 5.8+), and is asked first. (psutil reads
/proc/self/mounts, which has neither mount ids nor a bind mount's source.)

Paths are returned as os.fsdecode() gives them (undecodable bytes kept as
surrogate escapes), the same form os.listdir gives names in.
"""

import ctypes
import os
import re
import struct
from dataclasses import dataclass

MOUNTINFO = "/proc/self/mountinfo"
_ESCAPED = re.compile(rb"\\([0-7]{3})")  # the kernel writes space, tab, newline and backslash as \ooo
# statx(2): struct statx is 256 bytes, stx_mask (u32) at 0, stx_attributes (u64) at 8, stx_attributes_mask (u64)
# at 56, stx_mnt_id (u64) at 144.
AT_FDCWD, AT_EMPTY_PATH, AT_STATX_DONT_SYNC = -100, 0x1000, 0x4000
STATX_MNT_ID, STATX_ATTR_MOUNT_ROOT = 0x1000, 0x2000


def _load_statx():
    try:
        call = ctypes.CDLL(None, use_errno=True).statx  # glibc 2.28+, musl 1.2.5+
    except (OSError, AttributeError):
        return None
    call.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_uint, ctypes.c_void_p)
    call.restype = ctypes.c_int
    return call


_statx = _load_statx()


@dataclass(frozen=True)
class Mount:
    mount_id: int
    point: str  # where it is mounted
    fs_type: str
    source: str  # the device (or share) mounted
    subtree: str  # the directory of that filesystem shown here: "/" unless a bind mount of part of it

    def describe(self) -> str:
        """Words for a run's record: 'bind mount of /srv/models (ext4 on /dev/vda)'."""
        what = f"bind mount of {self.subtree}" if self.subtree != "/" else "mount"
        return f"{what} ({self.fs_type} on {self.source})"


def _field(raw: bytes) -> str:
    return os.fsdecode(_ESCAPED.sub(lambda m: bytes([int(m.group(1), 8)]), raw))


def table(path: str = MOUNTINFO) -> list[Mount]:
    """Every mount this process sees; raises OSError if the table cannot be read."""
    with open(path, "rb") as fh:
        lines = fh.read().splitlines()
    mounts = []
    for line in lines:
        # id parent major:minor subtree point options [optional fields...] - type source super-options
        head, _, tail = line.partition(b" - ")
        fields, after = head.split(b" "), tail.split(b" ")
        mounts.append(Mount(int(fields[0]), _field(fields[4]), _field(after[0]), _field(after[1]),
                            _field(fields[3])))
    return mounts


def below(root: str) -> dict[str, dict[str, Mount]]:
    """Mount points strictly below the canonical directory root, as {parent relpath: {name: mount}}."""
    prefix = root.rstrip("/") + "/"
    found: dict[str, dict[str, Mount]] = {}
    for mount in table():
        if mount.point.startswith(prefix):
            parent, _, name = mount.point[len(prefix):].rpartition("/")
            found.setdefault(parent, {})[name] = mount
    return found


def mount_id(fd: int) -> int:
    """The id of the mount the open descriptor fd lies on (the ids of the table)."""
    # A walk asks this once per directory: statx is one system call, fdinfo an open, a read and a close of a
    # /proc file (15 us against 2 here). fdinfo stays for kernels, libcs and sandboxes without statx.
    if _statx is not None:
        buf = ctypes.create_string_buffer(256)
        if _statx(fd, b"", AT_EMPTY_PATH, STATX_MNT_ID, buf) == 0 and struct.unpack_from("=I", buf)[0] & STATX_MNT_ID:
            return struct.unpack_from("=Q", buf, 144)[0]
    return _fdinfo_mount_id(fd)


def is_mount_point(path: str) -> bool:
    """Whether path (symlinks followed) is where a filesystem is mounted, bind mounts of the same filesystem
    included; raises OSError if it cannot be looked at.

    statx says so itself (STATX_ATTR_MOUNT_ROOT, Linux 5.8+). os.path.ismount, the fallback, compares device
    numbers with the parent's and so calls a bind mount of the same filesystem an ordinary directory.
    """
    if _statx is not None:
        buf = ctypes.create_string_buffer(256)
        # No field asked for and no sync: the answer is the VFS's own, so a FUSE or NFS server is not asked
        # for the file's attributes (a server that answers statfs alone still gets its usage checked).
        if _statx(AT_FDCWD, os.fsencode(path), AT_STATX_DONT_SYNC, 0, buf) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err), path)
        attributes, known = struct.unpack_from("=Q", buf, 8)[0], struct.unpack_from("=Q", buf, 56)[0]
        if known & STATX_ATTR_MOUNT_ROOT:
            return bool(attributes & STATX_ATTR_MOUNT_ROOT)
    os.stat(path)  # ismount answers False for a path it cannot stat: that is an error here
    return os.path.ismount(path)


def _fdinfo_mount_id(fd: int) -> int:
    info = os.open(f"/proc/self/fdinfo/{fd}", os.O_RDONLY | os.O_CLOEXEC)
    try:
        text = os.read(info, 4096)
    finally:
        os.close(info)
    _, found, after = text.partition(b"\nmnt_id:")
    if not found:
        raise OSError(f"/proc/self/fdinfo/{fd} names no mount id")
    return int(after.split(None, 1)[0])
