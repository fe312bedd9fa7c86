"""A task dropped because it kept killing its worker (glmadmin/poison.py) is an incident: somebody must
look at the worker's log (out of memory? a crash in a library?) and resolve it by hand."""

from .incidents import drive
from .levels import Level
from .models import Incident


def open_incident(task_name: str, task_id: str, died: int) -> None:
    drive(f"task:{task_name}", Level.ORANGE, kind=Incident.Kind.WORKER, title=f"Task {task_name} dropped",
          value=died, message=f"it ended its worker process {died} times in a row and was dropped (last id "
                              f"{task_id}); see the worker's log, then resolve this incident")
