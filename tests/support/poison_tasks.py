"""A task that kills the process running it, as an out-of-memory kill would: loaded into a real worker
(`celery worker -I tests.support.poison_tasks`) by the poison-task test."""

import os
import signal

from celery import shared_task


@shared_task
def kill_own_process(marker: str) -> None:
    with open(marker, "a") as out:
        out.write("started\n")  # one line per start: the test counts the deliveries
    os.kill(os.getpid(), signal.SIGKILL)
