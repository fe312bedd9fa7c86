"""Small formatting shared by the command line and the pages."""

from ..templatetags.monitoring_tags import gib


def size(num_bytes: int | None) -> str:
    return "-" if num_bytes is None else gib(num_bytes)
