"""A read of the outside world that did not return in time is itself an incident (kind "check", orange).

For reads outside the disk check (which batches its own, monitoring.disk_check), e.g. the walk of /proc:
guard() runs the read through glmadmin.lib.deadline; when it stalls, the incident names what hung ("reading
the process table did not return in 5 s") and Stalled goes on to the caller; the next time the read returns,
the incident resolves by itself.
"""

from django.conf import settings

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident
from glmadmin.lib import deadline


def guard(subject: str, title: str, fn, *args, seconds: float, what: str):
    """fn(*args) within `seconds`; raises deadline.Stalled after opening the "check stalled" incident."""
    host = settings.GLMADMIN_HOST_NAME
    source = f"check:{subject}:{host}"
    try:
        result = deadline.run(f"{subject}:{host}", fn, *args, seconds=seconds, what=what)
    except deadline.Stalled as exc:
        drive(source, Level.ORANGE, kind=Incident.Kind.CHECK, title=f"Check stalled: {title} on {host}", value=None,
              message=str(exc), host=host)
        raise
    # Resolves an open one; drive() finds none open in one query and does nothing.
    drive(source, None, kind=Incident.Kind.CHECK, title="", value=None, message=f"{what} returns again", host=host)
    return result
