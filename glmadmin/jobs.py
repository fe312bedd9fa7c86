"""Queue a Celery task by its registered name.

Only tasks.py modules define tasks, and they call the logic below them; that
logic queues follow-up work (a notification to deliver, a cleanup to run, an
engine to step) through here, so it never imports a tasks module back. The
task is looked up in Celery's registry, so eager mode (tests) still applies.
"""

from .celery import app


def task(name: str):
    """The registered task called name; NotRegistered if no app's tasks module defines it."""
    if name not in app.tasks:
        app.loader.import_default_modules()  # a web process imports the tasks modules only here
    return app.tasks[name]


def enqueue(name: str, *args, queue: str | None = None, expires: float | None = None,
            countdown: float | None = None):
    options = {key: value for key, value in (("queue", queue), ("expires", expires), ("countdown", countdown))
               if value is not None}
    return task(name).apply_async(args, **options)


def alias(old_name: str, task):
    """Register `task` under a name it had in an earlier release, with the same limits: messages queued
    before an upgrade, and beat rows not yet migrated, still run."""
    return app.task(name=old_name, soft_time_limit=task.soft_time_limit, time_limit=task.time_limit)(task.run)
