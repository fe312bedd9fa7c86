"""Xid events as they happen: one listening thread per host, in a process that samples that host.

The thread blocks in NVML's event wait (gpu_health.listen) for at most WAIT_MS, so it costs nothing while
the GPUs are quiet, and writes each Xid with its time into a Redis list the next sampling cycle reads.
Celery's prefork worker runs the sampling task in any of its children: the first one to sample starts the
thread and holds a Redis lock (renewed after every wait) so that the others do not start a second one,
which would record every Xid twice. A child that exits takes its thread along; its lock expires after
LOCK_TTL and the next cycle, in whichever child, starts a new listener.
"""

import itertools
import json
import logging
import os
import socket
import threading

from glmadmin.lib import nvml
from glmadmin.lib import redis as rd

from . import gpu_health
from .gpu_health import XidEvent

log = logging.getLogger(__name__)

WAIT_MS = 5000  # one wake-up every 5 s while nothing happens
LOCK_TTL = 30  # seconds: a listener that stopped renewing is replaced after this long
KEEP = 200  # events kept per host (the newest)
KEEP_SECONDS = 7 * 24 * 3600

_thread: threading.Thread | None = None
_stop = threading.Event()
_guard = threading.Lock()
_starts = itertools.count()


def events_key(host: str) -> str:
    return rd.key("telemetry", "xid", host)


def lock_key(host: str) -> str:
    return rd.key("telemetry", "xid-listener", host)


def record(host: str, event: XidEvent) -> None:
    pipe = rd.client().pipeline(transaction=False)
    pipe.lpush(events_key(host), json.dumps({"index": event.index, "code": event.code, "at": event.at}))
    pipe.ltrim(events_key(host), 0, KEEP - 1)
    pipe.expire(events_key(host), KEEP_SECONDS)
    pipe.execute()
    log.warning("Xid %s on GPU %s of %s", event.code, event.index, host)


def recent(host: str, since: float) -> list[XidEvent]:
    """The events of `host` since `since` (epoch seconds), oldest first."""
    events = [XidEvent(**json.loads(raw)) for raw in rd.client().lrange(events_key(host), 0, -1)]
    return sorted((e for e in events if e.at >= since), key=lambda e: e.at)


def _token() -> str:
    # One per listener thread: a stopping listener never deletes the lock of the one that replaced it.
    return f"{socket.gethostname()}:{os.getpid()}:{next(_starts)}"


def ensure(host: str) -> bool:
    """Start this process's listener unless one runs (here or in another process of this host).

    True when this process listens. Called by every sampling cycle, so a listener that died comes back.
    """
    global _thread
    with _guard:
        if _thread is not None and _thread.is_alive() and _thread.library is nvml.pynvml:
            return True
        client, token = rd.client(), _token()
        if not client.set(lock_key(host), token, nx=True, ex=LOCK_TTL):
            return False  # another process listens (or a listener of ours that died; its lock expires)
        _stop.clear()
        _thread = threading.Thread(target=_run, args=(host, token, nvml.pynvml), name=f"xid-listener-{host}",
                                   daemon=True)
        _thread.library = nvml.pynvml  # tests swap the library: a listener on another one is replaced
        _thread.start()
        return True


def stop(timeout: float = 30) -> None:
    """Stop this process's listener (tests; a process that exits needs nothing)."""
    global _thread
    with _guard:
        thread, _thread = _thread, None
    if thread is not None:
        _stop.set()
        thread.join(timeout)


def _run(host: str, token: str, library) -> None:
    def still_wanted() -> bool:
        # Renew the lock; stop when another process took it over or the NVML library was swapped (tests).
        if nvml.pynvml is not library:
            return False
        client = rd.client()
        if client.get(lock_key(host)) != token:
            return False
        client.expire(lock_key(host), LOCK_TTL)
        return True

    try:
        gpu_health.listen(lambda event: record(host, event), _stop, WAIT_MS, still_wanted)
    except Exception:  # noqa: BLE001 - NVML or Redis gone: the next cycle starts a new listener
        log.exception("the Xid listener of %s stopped", host)
    finally:
        try:
            client = rd.client()
            if client.get(lock_key(host)) == token:
                client.delete(lock_key(host))
        except Exception:  # noqa: BLE001 - Redis down: the lock expires by itself
            pass
