import gc
import os

from celery import Celery
from celery.signals import worker_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "glmadmin.settings")
# Django's system checks import every URLconf and view (and what they import) into the worker and
# beat; `manage.py migrate` has run them before the stack starts. Skipping them saves ~35 MB.
os.environ.setdefault("CELERY_SKIP_CHECKS", "1")

# Every task counts its starts, so one that kills its worker is dropped, not re-queued for ever.
app = Celery("glmadmin", task_cls="glmadmin.poison:CountedTask")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def _freeze_before_fork(**kwargs):
    # Objects made so far are moved out of the collector's reach, so the prefork children's
    # garbage collections do not touch (and so copy) the pages they share with the parent.
    gc.collect()
    gc.freeze()
