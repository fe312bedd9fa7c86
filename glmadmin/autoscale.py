"""Celery's autoscaler, shrinking the pool once it has not been full for a while.

A prefork child holds ~75 MB of RSS, so the lanes keep no more children than their work needs
(Procfile: `--autoscale 2,1` for the engine lane, `2,0` for sends). Celery's own Autoscaler shrinks only
after `keepalive` seconds (AUTOSCALE_KEEPALIVE, 30) without receiving any task at all, which never
comes on the engine lane (a reconcile every 5 s): a second child forked for one overlap (a cleanup run
beside a reconcile) stayed for good. This one shrinks once no task in the last `keepalive` seconds found
every process taken; it grows as Celery's does, at the task that needs another process, and the children
are prefork ones as before (so the hard time limits still replace a hung one).
"""

from time import monotonic

from celery.worker.autoscale import Autoscaler as CeleryAutoscaler


class Autoscaler(CeleryAutoscaler):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_full = monotonic()  # when the reserved tasks last took every process

    def _maybe_scale(self, req=None):
        if self.qty >= self.processes:
            self._last_full = monotonic()
        return super()._maybe_scale(req)

    def scale_down(self, n):
        if monotonic() - self._last_full > self.keepalive:
            return self._shrink(n)
        return None
