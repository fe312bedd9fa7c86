"""A small real tmpfs mounted by the test, and a way to fill it to a given usage.

    from tests.support import tmpfs as tmpfs_support
    volume = tmpfs_support.volume  # the fixture, in the test module
"""

import os
import subprocess

import pytest


@pytest.fixture
def volume(tmp_path):
    mountpoint = tmp_path / "vol"
    mountpoint.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mountpoint)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def fill_to(mountpoint, percent):
    """Write a file so the filesystem reaches about `percent` in use."""
    st = os.statvfs(mountpoint)
    total = st.f_blocks * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    extra = int(total * percent / 100) - used
    with open(mountpoint / f"fill-{percent}", "wb") as fh:
        fh.write(b"\0" * max(extra, 0))


def empty(mountpoint):
    for f in mountpoint.iterdir():
        f.unlink()
