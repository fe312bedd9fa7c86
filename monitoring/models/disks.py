"""Watched filesystems with their thresholds, and their usage history."""

import os
from itertools import pairwise

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from alerts.levels import Level, evaluate
from glmadmin.lib import deadline

PERCENT = [MinValueValidator(0), MaxValueValidator(100)]
MAX_FOR_SECONDS = 3600  # an hour: a level held back longer than that is better off disabled
FOR_SECONDS = [MinValueValidator(0), MaxValueValidator(MAX_FOR_SECONDS)]
FOR_HELP = ("Seconds a reading must stay at or above this threshold before the alert opens or escalates to it "
            "(0: at once).")
# Admin saves check the path with a deadline too: a hung mount must not hang the web request.
PATH_CHECK_SECONDS = 5.0


def default_host() -> str:
    return settings.GLMADMIN_HOST_NAME


def _readable_directory(path: str) -> bool:
    os.statvfs(path)
    return os.path.isdir(path)


class WatchedFilesystem(models.Model):
    """A filesystem whose usage is checked, with its alert thresholds."""

    path = models.CharField(max_length=500, unique=True,
                            help_text="The filesystem's mount point, or any directory on it (it must exist).")
    label = models.CharField(max_length=100, help_text="Short name shown in alerts, e.g. 'models' or 'root'.")
    # Like an engine's host: only that host's alerts worker can statvfs its mounts, so only it checks them.
    host = models.CharField(max_length=100, default=default_host, db_index=True,
                            help_text="The glmadmin host whose disk this is (its GLMADMIN_HOST_NAME); that host's "
                                      "alerts worker checks it.")
    enabled = models.BooleanField(default=True)
    yellow_enabled = models.BooleanField("yellow on", default=True)
    yellow_percent = models.FloatField("yellow at %", default=85.0, validators=PERCENT)
    orange_enabled = models.BooleanField("orange on", default=True)
    orange_percent = models.FloatField("orange at %", default=92.0, validators=PERCENT)
    red_enabled = models.BooleanField("red on", default=True)
    red_percent = models.FloatField(
        "red at %", default=97.0, validators=PERCENT, help_text="Red pauses new inference requests."
    )
    # How long a reading must hold a level first, so a short spike neither opens an incident nor pages anyone.
    # Yellow and orange wait by default (they inform, and orange's cleanup loses nothing by half a minute);
    # red stays immediate (it pauses new requests before a filling disk breaks the running ones).
    yellow_for_seconds = models.PositiveIntegerField("yellow for (s)", default=60, validators=FOR_SECONDS,
                                                     help_text=FOR_HELP)
    orange_for_seconds = models.PositiveIntegerField("orange for (s)", default=30, validators=FOR_SECONDS,
                                                     help_text=FOR_HELP)
    red_for_seconds = models.PositiveIntegerField("red for (s)", default=0, validators=FOR_SECONDS,
                                                  help_text=FOR_HELP)
    clear_margin = models.FloatField(
        default=2.0,
        validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text="An alert clears only when usage drops this many points below its threshold.",
    )
    # The latest reading, kept here so the status bar needs no query on the samples.
    last_percent = models.FloatField(null=True, blank=True, editable=False)
    last_checked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_error = models.CharField(max_length=300, blank=True, editable=False)
    # Learned by the host's first check of this path: an unmounted filesystem leaves its mount point behind as
    # an ordinary directory, whose statvfs then reads the filesystem underneath (usually /), so without this
    # the check would go on reporting the wrong disk and no alert would say the mount is gone.
    mount_point = models.BooleanField(
        null=True, editable=False,
        help_text="Whether the path was a mount point at its first check (empty: not checked yet). If it was, "
                  "an incident opens while it is not one.")

    class Meta:
        ordering = ["path"]
        verbose_name = "watched filesystem"

    def __str__(self):
        return f"{self.label} ({self.path})"

    def save(self, *args, **kwargs):
        # Another path (or host) is another filesystem: what was learned about the old one does not hold.
        loaded = getattr(self, "_loaded_place", None)
        if loaded is not None and loaded != self._place():
            self.mount_point = None
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "mount_point"}
        super().save(*args, **kwargs)
        self._loaded_place = self._place()

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded_place = instance._place() if {"path", "host"} <= set(field_names) else None
        return instance

    def _place(self) -> tuple[str, str]:
        return self.path, self.host

    @property
    def source(self) -> str:
        return f"disk:{self.path}"

    def thresholds(self) -> dict[str, float]:
        levels = {
            Level.YELLOW: (self.yellow_enabled, self.yellow_percent),
            Level.ORANGE: (self.orange_enabled, self.orange_percent),
            Level.RED: (self.red_enabled, self.red_percent),
        }
        return {level: percent for level, (on, percent) in levels.items() if on}

    def for_seconds(self, level: str) -> int:
        """How long a reading must hold `level` before the incident opens or escalates to it."""
        return getattr(self, f"{level}_for_seconds")

    def level_for(self, percent: float, current: str | None) -> str | None:
        return evaluate(percent, self.thresholds(), current, self.clear_margin)

    def clean(self):
        errors = {}
        path_problem = self.path_problem()
        if path_problem:
            errors["path"] = path_problem
        enabled = [(level, pct) for level, pct in self.thresholds().items() if pct is not None]
        for (low, low_pct), (high, high_pct) in pairwise(enabled):
            if low_pct >= high_pct:
                errors[f"{high}_percent"] = (
                    f"The {high} threshold ({high_pct:g} %) must be above the {low} threshold ({low_pct:g} %)."
                )
        if errors:
            raise ValidationError(errors)

    def path_problem(self) -> str | None:
        """Why path cannot be watched: not absolute, missing, not a directory or mount point, unreadable."""
        if not self.path:
            return None  # the required field says so
        if not self.path.startswith("/"):
            return "Use an absolute path (starting with /)."
        if self.host != settings.GLMADMIN_HOST_NAME:
            return None  # another host's mount: only its own worker can look at it (and says so at its first check)
        try:
            is_dir = deadline.run(f"path-check:{self.path}", _readable_directory, self.path,
                                  seconds=PATH_CHECK_SECONDS, what=f"statvfs on {self.path}")
        except deadline.Stalled as exc:
            return f"{self.path} does not answer ({exc}): is its mount hung?"
        except OSError as exc:
            return f"{self.path} cannot be read ({exc.strerror or exc}): give an existing mount point or directory."
        if not is_dir:
            return f"{self.path} is not a directory: give the filesystem's mount point or a directory on it."
        return None


class DiskSample(models.Model):
    filesystem = models.ForeignKey(WatchedFilesystem, on_delete=models.CASCADE, related_name="samples")
    at = models.DateTimeField(db_index=True)
    percent = models.FloatField()
    used_bytes = models.BigIntegerField()
    total_bytes = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["filesystem", "at"])]

    def __str__(self):
        return f"{self.filesystem_id} {self.at:%Y-%m-%d %H:%M:%S} {self.percent:.1f} %"
