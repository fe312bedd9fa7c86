"""Alert levels and the pure rule that turns a reading into a level."""

from django.db import models


class Level(models.TextChoices):
    YELLOW = "yellow", "Yellow"
    ORANGE = "orange", "Orange"
    RED = "red", "Red"


_RANK = {None: 0, Level.YELLOW: 1, Level.ORANGE: 2, Level.RED: 3}


def rank(level: str | None) -> int:
    return _RANK[Level(level) if level else None]


def evaluate(value: float, thresholds: dict[str, float], current: str | None, clear_margin: float) -> str | None:
    """The level a reading puts a subject at, given the level it is at now.

    thresholds maps each *enabled* level to its percentage. A level is entered
    at its threshold, but a level the subject already holds (or one below it)
    is only left once the value drops clear_margin below its threshold, so a
    value hovering at the threshold does not flap.
    """
    for level in sorted(thresholds, key=rank, reverse=True):
        threshold = thresholds[level]
        if rank(level) <= rank(current):
            threshold -= clear_margin
        if value >= threshold:
            return Level(level)
    return None
