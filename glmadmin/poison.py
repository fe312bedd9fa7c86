"""Tasks that kill the process running them are dropped after a few tries, and somebody is told.

Tasks are acknowledged after they ran and re-queued when their worker process dies (settings:
acks_late, reject_on_worker_lost), so a killed worker loses nothing. The price: a task that itself
kills its process (out of memory, a crash in a C library) comes back for ever, taking a worker down
each time. Every run is counted in Redis by task id; past MAX_RUNS it is dropped instead of run, and
the apps' handlers are told (alerts opens an incident; registered in its AppConfig.ready()).
"""

import logging
from collections.abc import Callable

from celery import Task
from redis.exceptions import RedisError

from glmadmin.lib import redis as rd

log = logging.getLogger(__name__)

MAX_RUNS = 3
COUNT_TTL = 24 * 3600  # a task id is not retried for longer than this

_handlers: list[Callable[[str, str, int], None]] = []


def on_dropped(handler: Callable[[str, str, int], None]) -> None:
    """handler(task name, task id, runs that ended without an answer) is called when a task is dropped."""
    if handler not in _handlers:
        _handlers.append(handler)


def runs(task_id: str) -> int:
    """Count one more start of task_id; returns how many there were (1 for a first delivery)."""
    key = rd.key("task-runs", task_id)
    pipe = rd.client().pipeline()
    pipe.incr(key)
    pipe.expire(key, COUNT_TTL)
    return pipe.execute()[0]


class CountedTask(Task):
    """The base of every task (glmadmin/celery.py): counts each start, drops a task that keeps dying."""

    def __call__(self, *args, **kwargs):
        request = self.request
        if request.id and not request.is_eager and not request.called_directly:
            try:
                started = runs(request.id)
            except RedisError:
                started = 1  # counting is a safeguard: without Redis the task still runs
            if started > MAX_RUNS:
                return self._drop(request.id, started - 1)
        return super().__call__(*args, **kwargs)

    def _drop(self, task_id: str, died: int) -> str:
        log.error("task %s (%s) ended its worker process %d times: dropped", self.name, task_id, died)
        for handler in _handlers:
            try:
                handler(self.name, task_id, died)
            except Exception:  # noqa: BLE001 - one failing handler must not re-queue the poison
                log.exception("handler of the dropped task %s failed", self.name)
        return f"dropped: ended its worker process {died} times"
