"""A failed engine is an incident like a full disk: in the history, on the banner, notified."""

from alerts.incidents import drive
from alerts.levels import Level
from alerts.models import Incident


def _source(engine) -> str:
    return f"engine:{engine.host}:{engine.name}"


def open_failed(engine, reason: str) -> None:
    # Orange, not red: red pauses all inference, and one failed engine must not stop the others.
    drive(_source(engine), Level.ORANGE, kind=Incident.Kind.ENGINE, title=f"Engine {engine.name} failed",
          value=None, message=f"{reason}; it stays down until an operator restarts it", host=engine.host)


def resolve(engine) -> None:
    drive(_source(engine), None, kind=Incident.Kind.ENGINE, title=f"Engine {engine.name} failed", value=None,
          message="ready again", host=engine.host)
