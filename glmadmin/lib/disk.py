"""Filesystem usage as df reports it."""

from dataclasses import dataclass

import psutil


@dataclass(frozen=True)
class Usage:
    total_bytes: int
    used_bytes: int
    free_bytes: int
    percent: float


def usage(path: str) -> Usage:
    """Usage of the filesystem holding path; raises OSError if it cannot be read.

    percent is used / (used + available), like df: blocks reserved for root
    count as full, because that is when ordinary writers start failing.
    """
    u = psutil.disk_usage(path)
    avail_total = u.used + u.free
    percent = 100.0 * u.used / avail_total if avail_total else 0.0
    return Usage(total_bytes=u.total, used_bytes=u.used, free_bytes=u.free, percent=percent)
