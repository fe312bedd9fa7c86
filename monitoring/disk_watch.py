"""Quick disk checks: every DISK_CHECK_SECONDS (0.5 s by default), from a thread of the host's alerts worker.

Why a thread and not a beat task every second: a Celery task costs beat and the worker a few milliseconds
of CPU each (a scheduler tick, a message, a pool round trip), which at once a second is more than the
whole idle stack may use (2 % of a core), and beat's schedules count whole seconds. A run of the thread
costs a statvfs per filesystem (in its deadline thread) when nothing changed (disk_check.Watcher): under
1 ms of CPU (0.76 ms measured at the thread's pace), so twice a second costs about 0.15 % of a core and
leaves most of the 1.5 s from a crossing to every open page (issue 16's goal at 1,000 pages) to the push.

What does not change: the full check (disk_check.check_all) still runs from beat every 10 s in the same
worker's queue (alerts.<host>), stores the history, and leaves the heartbeat the dead man's switch
watches, so a dead worker or beat is seen as before; if this thread stopped, the disks would still be
checked every 10 s. Each statvfs runs under the same deadline (a hung mount is a "check stalled"
incident at once, and later runs do not wait on it again). The thread runs in the worker's main
process (started by worker_ready, monitoring/tasks.py), one per alerts worker of the host, and only
for that host's filesystems.
"""

import logging
import threading
import time

from django.db import close_old_connections

from . import deadman, disk_check

log = logging.getLogger(__name__)


class Loop:
    """Runs a Watcher every `every` seconds in a daemon thread until stopped."""

    def __init__(self, every: float):
        self.every = every
        self.watcher = disk_check.Watcher()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error = ""
        self.runs = 0  # completed runs (for the tests and the log)
        self._marked = 0.0  # when this loop last told the dead man's switch that it runs (monotonic)

    def start(self) -> "Loop":
        self._thread = threading.Thread(target=self._run, name="disk-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.tick()
            # The next run is due `every` seconds after this one started: a slow run is not followed by a burst.
            self._stop.wait(max(self.every - (time.monotonic() - started), 0.0))

    def tick(self) -> None:
        close_old_connections()  # a connection the database dropped meanwhile is not reused
        try:
            self.watcher.run()
            self.runs += 1
            if time.monotonic() - self._marked >= deadman.QUICK_MARK_SECONDS:
                deadman.record_quick_checks(self.every)
                self._marked = time.monotonic()
            if self._last_error:
                log.info("quick disk checks run again")
            self._last_error = ""
        except Exception as exc:  # noqa: BLE001 - the database or Redis away: try again next time, say it once
            if str(exc) != self._last_error:
                log.exception("quick disk check failed (the full check every 10 s goes on)")
            self._last_error = str(exc)
            self.watcher.view = None  # read everything again once it works
        finally:
            close_old_connections()
