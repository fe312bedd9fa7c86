"""An exclusive, non-blocking lock held for as long as a process lives (flock).

Unlike a Redis lock it needs no expiry: the kernel releases it when the holder
exits or crashes, however long the work took. Right for work on local paths.
"""

import fcntl
import os
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path):
    """Yield True to the one holder of the lock file `path`, False to anyone else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)
