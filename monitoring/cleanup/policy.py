"""Parsing and validation of what an admin types into a cleanup or log policy."""

import fnmatch
import os
import re

from django.conf import settings
from django.core.exceptions import ValidationError

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
# Whole system trees a typo could point a cleanup at.
FORBIDDEN_ROOTS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib64", "/opt", "/proc", "/root",
                   "/run", "/sbin", "/srv", "/sys", "/tmp", "/usr", "/var"}


def parse_size(text: str) -> int:
    """'2G' -> 2147483648. Units K, M, G, T are powers of 1024; a plain number is bytes."""
    match = SIZE.match(text or "")
    if not match:
        raise ValueError(f"{text!r} is not a size: use a number with K, M or G, e.g. 2G or 500M.")
    return int(float(match.group(1)) * UNITS[match.group(2).upper()])


def validate_size(text: str) -> None:
    try:
        parse_size(text)
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def split_patterns(text: str) -> list[str]:
    return [line.strip() for line in (text or "").splitlines() if line.strip()]


def validate_patterns(text: str) -> None:
    """Globs relative to the root (one per line): no absolute paths, no '..', brackets closed."""
    for pattern in split_patterns(text):
        if pattern.startswith("/") or ".." in pattern.split("/"):
            raise ValidationError(f"{pattern!r}: patterns are relative to the root; no leading / and no '..'.")
        if _unclosed_bracket(pattern):
            raise ValidationError(f"{pattern!r}: a '[' is not closed (write [[] for a literal bracket).")
        re.compile(fnmatch.translate(pattern))


def validate_log_patterns(text: str) -> None:
    """Log file globs are absolute (the logs live in different places)."""
    patterns = split_patterns(text)
    if not patterns:
        raise ValidationError("Give at least one pattern, e.g. /var/lib/glmadmin/engines/*/engine.log.")
    for pattern in patterns:
        if not pattern.startswith("/") or ".." in pattern.split("/"):
            raise ValidationError(f"{pattern!r}: use an absolute path pattern without '..'.")
        if _unclosed_bracket(pattern):
            raise ValidationError(f"{pattern!r}: a '[' is not closed (write [[] for a literal bracket).")


def _unclosed_bracket(pattern: str) -> bool:
    depth_open = pattern.rfind("[")
    return depth_open != -1 and "]" not in pattern[depth_open + 2:]


def root_problem(root: str) -> str | None:
    """Why root cannot be a cleanup root, or None if it can."""
    if not root.startswith("/"):
        return "Use an absolute path (starting with /)."
    normal = os.path.normpath(root)
    if normal in FORBIDDEN_ROOTS:
        return f"{normal} is a system directory; point the policy at the cache directory itself."
    if os.path.islink(normal):
        return f"{normal} is a symlink; enter the directory it points to ({os.path.realpath(normal)})."
    if not os.path.isdir(normal):
        return f"{normal} does not exist or is not a directory."
    real = os.path.realpath(normal)
    for precious in (settings.DATA_DIR, settings.BASE_DIR):
        precious = os.path.realpath(precious)
        if precious == real or precious.startswith(real.rstrip("/") + "/"):
            return f"{normal} contains glmadmin's own files ({precious}); choose a directory inside it."
    return None


def matches(relpath: str, name: str, patterns: list[str]) -> bool:
    """A pattern with a / matches the path relative to the root, one without matches the file name."""
    return any(fnmatch.fnmatchcase(relpath if "/" in p else name, p) for p in patterns)
