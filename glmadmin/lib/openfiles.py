"""Which files some process on this machine has open or mapped.

Read from /proc: every /proc/PID/fd/N is stat'ed (the magic link leads to the
open file itself, whatever path it was opened by, even a renamed one), and
/proc/PID/maps lists files mapped into memory (model weights, compiled
kernels) with their device and inode. Files are identified by (device,
inode), the identity a scan sees too, so no path comparison can be fooled.
Processes that vanish or cannot be read mid-way are skipped.
"""

import os


def open_inodes(proc: str = "/proc") -> set[tuple[int, int]]:
    """(st_dev, st_ino) of every file open or mapped by any process we can see."""
    found: set[tuple[int, int]] = set()
    for pid in os.listdir(proc):
        if not pid.isdigit():
            continue
        _add_fds(f"{proc}/{pid}/fd", found)  # this process too: a file we hold open is in use
        _add_maps(f"{proc}/{pid}/maps", found)
    return found


def _add_fds(fd_dir: str, found: set) -> None:
    try:
        names = os.listdir(fd_dir)
    except OSError:
        return
    for name in names:
        try:
            st = os.stat(f"{fd_dir}/{name}")
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))


def _add_maps(maps: str, found: set) -> None:
    try:
        with open(maps) as fh:
            lines = fh.readlines()
    except OSError:
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
