"""Calls that can block on the outside world, run with a deadline.

statvfs on a dead NFS or FUSE mount, NVML on a GPU that fell off the bus and
/proc of a process stuck in the kernel can block for ever, and no signal gets
the calling thread out. So the call runs in a daemon thread and the caller
waits for it only until its deadline; a call that misses it raises Stalled,
which the caller reports (a check that cannot finish is itself an incident).

The hung thread cannot be stopped, so it is left to finish on its own, and it
bounds itself: while a call for a key (e.g. "statvfs:/mnt/models") is still
running, asking for the same key again joins that call instead of starting a
second thread on the same stuck path, and once its deadline has passed the
answer is Stalled at once, so a check repeated every second does not wait (or
pile up threads) on a path it already knows is hung. At most MAX_HUNG calls
hang in a process at a time; beyond that a new call is refused without a
thread. A call that returns frees its key: the next call asks afresh.
"""

import os
import threading
import time
from collections.abc import Callable
from typing import Any

MAX_HUNG = 32


class Stalled(Exception):
    """A call did not return within its deadline (or could not even start: too many calls still hang).

    Not an OSError: a caller's `except OSError` (a path that cannot be read) must not take a hang for an answer.
    """

    def __init__(self, what: str, seconds: float, since: float, refused: bool = False):
        self.what, self.seconds, self.since, self.refused = what, seconds, since, refused
        if refused:
            text = f"{what} was not started: {MAX_HUNG} earlier calls are still hung"
        else:
            text = f"{what} did not return in {seconds:g} s"
        super().__init__(text)


class Call:
    """One run of a blocking function in its own daemon thread."""

    def __init__(self, key: str, fn: Callable[..., Any], args: tuple, kwargs: dict):
        self.key = key
        self.started = time.monotonic()
        self._done = threading.Event()
        self._result: Any = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fn, args, kwargs), name=f"deadline {key}",
                                         daemon=True)

    def _run(self, fn, args, kwargs) -> None:
        try:
            self._result = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller, raised there
            self._error = exc
        finally:
            _finished(self)
            self._done.set()

    def wait(self, seconds: float, what: str) -> Any:
        """The call's result, or Stalled once `seconds` have passed since it started (raises its error)."""
        left = self.started + seconds - time.monotonic()
        if not self._done.wait(max(left, 0.0)):
            raise Stalled(what, seconds, self.started)
        if self._error is not None:
            raise self._error
        return self._result


_lock = threading.Lock()
_running: dict[str, Call] = {}


def start(key: str, fn: Callable[..., Any], *args, **kwargs) -> Call:
    """Start fn(*args, **kwargs) for `key`, or join the call for `key` that is still running.

    Start several before waiting on any, and their deadlines run at the same time.
    Raises Stalled (refused) when MAX_HUNG calls are already running.
    """
    with _lock:
        call = _running.get(key)
        if call is not None:
            return call
        if len(_running) >= MAX_HUNG:
            raise Stalled(key, 0, time.monotonic(), refused=True)
        call = _running[key] = Call(key, fn, args, kwargs)
    call._thread.start()
    return call


def run(key: str, fn: Callable[..., Any], *args, seconds: float, what: str, **kwargs) -> Any:
    """fn(*args, **kwargs) if it returns within `seconds`; Stalled (naming `what`) otherwise."""
    try:
        call = start(key, fn, *args, **kwargs)
    except Stalled as exc:
        raise Stalled(what, seconds, exc.since, refused=True) from None
    return call.wait(seconds, what)


def hung() -> dict[str, float]:
    """The keys whose call is still running, with how long each has run (seconds)."""
    now = time.monotonic()
    with _lock:
        return {key: now - call.started for key, call in _running.items()}


def _finished(call: Call) -> None:
    with _lock:
        if _running.get(call.key) is call:
            del _running[call.key]


def _forget_after_fork() -> None:
    # A forked child (a Celery prefork worker) has none of its parent's threads: their calls never finish here.
    global _lock
    _lock = threading.Lock()
    _running.clear()


os.register_at_fork(after_in_child=_forget_after_fork)
