"""What an admin types into a cleanup or log policy, parsed and judged; where cleanup may act at all.

A root or a log pattern is judged in its canonical spelling: absolute, printable, and
spelled as the kernel resolves it (os.path.realpath: no symlinked component, no //, .
or trailing /). Cleanup acts only at or below the directories of
settings.CLEANUP_ALLOWED_ROOTS (a positive rule, not a list of places to avoid), never on
a directory that holds glmadmin's own files, and a log pattern never matches glmadmin's
database, secret key or Redis files. The admin stores the canonical spelling; every run
judges again before it takes its lock, because the disk and the settings may have
changed since.
"""

import fnmatch
import os
import posixpath
import re

from django.conf import settings
from django.core.exceptions import ValidationError

from glmadmin.lib.safewalk import shown

UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*$", re.IGNORECASE)
GLOB_MAGIC = re.compile(r"[*?[]")
MAX_KEEP = 100  # rotated files a log policy may keep: name.1 .. name.100


class Refused(ValueError):
    """A root or pattern cleanup must not act on; the message says why, for the admin and the run's record."""


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


def _unclosed_bracket(pattern: str) -> bool:
    depth_open = pattern.rfind("[")
    return depth_open != -1 and "]" not in pattern[depth_open + 2:]


# --- where cleanup may act -------------------------------------------------------------------------

def canonical(path: str) -> str:
    """The canonical spelling of an absolute path (it need not exist); raises Refused if a symlink is on the way."""
    if not path.startswith("/"):
        raise Refused("Use an absolute path (starting with /).")
    if not path.isprintable():
        raise Refused(f"{shown(path)} contains a control or unprintable character; rename the directory.")
    if ".." in path.split("/"):
        raise Refused(f"{path}: write the path without '..'.")
    lexical = "/" + posixpath.normpath(path).lstrip("/")  # normpath keeps a leading // (POSIX allows it)
    real = os.path.realpath(lexical)
    if real != lexical:
        raise Refused(f"{lexical} goes through a symlink; enter the directory it points to ({real}).")
    return real


def allowed_roots() -> list[str]:
    return [os.path.realpath(p) for p in settings.CLEANUP_ALLOWED_ROOTS]


def at_or_below(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def allowed_problem(real: str) -> str | None:
    """Why cleanup may not act at (or below) the canonical path real: outside every allowed root."""
    allowed = allowed_roots()
    if any(at_or_below(real, a) for a in allowed):
        return None
    return (f"{real} is outside the directories cleanup may act in ({', '.join(allowed)}); to confirm it, "
            "an operator adds it to GLMADMIN_CLEANUP_ALLOWED_ROOTS.")


def own_directory_problem(real: str) -> str | None:
    """Why a walk of the canonical directory real would reach glmadmin's own files, or None."""
    for own in (settings.DATA_DIR, settings.BASE_DIR):
        own = os.path.realpath(own)
        if at_or_below(own, real):
            return f"{real} contains glmadmin's own files ({own}); choose a directory inside it."
    return None


def checked_root(root: str) -> str:
    """root in its canonical spelling, if cleanup may act there (it may not exist); raises Refused."""
    real = canonical(root)
    problem = allowed_problem(real) or own_directory_problem(real)
    if problem:
        raise Refused(problem)
    return real


def root_problem(root: str) -> str | None:
    """Why root cannot be saved as a cleanup root, or None if it can (the admin's check)."""
    try:
        real = checked_root(root)
    except Refused as exc:
        return str(exc)
    if not os.path.isdir(real):
        return f"{real} does not exist or is not a directory."
    return None


# --- log patterns -------------------------------------------------------------------------------

def canonical_pattern(pattern: str) -> str:
    """A log pattern with its fixed directory part canonical; raises Refused (not absolute, '..', a symlink)."""
    if not pattern.startswith("/") or ".." in pattern.split("/"):
        raise Refused(f"{pattern!r}: use an absolute path pattern without '..'.")
    parts = [p for p in pattern.split("/") if p not in ("", ".")]
    fixed = next((i for i, p in enumerate(parts) if GLOB_MAGIC.search(p)), len(parts) - 1)
    directory = canonical("/" + "/".join(parts[:fixed]))
    return directory.rstrip("/") + "/" + "/".join(parts[fixed:])


def _fixed_directory(canonical_form: str) -> str:
    parts = canonical_form.split("/")
    fixed = next((i for i, p in enumerate(parts) if GLOB_MAGIC.search(p)), len(parts) - 1)
    return "/".join(parts[:fixed]) or "/"


def own_files() -> list[tuple[str, str]]:
    """(path, what) of glmadmin's own files that no log pattern may touch."""
    found = []
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        for name in {str(db["NAME"]), str(db.get("TEST", {}).get("NAME") or "")} - {""}:
            found += [(name + suffix, "database") for suffix in ("", "-wal", "-shm", "-journal")]
    data = os.path.realpath(settings.DATA_DIR)
    found.append((f"{data}/secret_key", "secret key"))
    if os.environ.get("GLMADMIN_SECRET_KEY_FILE"):  # read by settings.env_secret at start-up
        found.append((os.environ["GLMADMIN_SECRET_KEY_FILE"], "secret key"))
    if settings.REDIS_URL.startswith("unix://"):
        found.append((settings.REDIS_URL.removeprefix("unix://").split("?")[0], "Redis socket"))
    # Everything directly in the data directory is glmadmin's (database, secret, Redis's append-only files).
    for directory in (data, f"{data}/appendonlydir"):
        try:
            found += [(e.path, "file") for e in os.scandir(directory) if not e.is_dir(follow_symlinks=False)]
        except OSError:
            pass
    return [(os.path.realpath(path), what) for path, what in found]


def own_identities() -> dict[tuple[int, int], str]:
    """(st_dev, st_ino) -> what, of glmadmin's own files that exist: found again under any name or link."""
    found = {}
    for path, what in own_files():
        try:
            st = os.stat(path)
        except OSError:
            continue
        found[(st.st_dev, st.st_ino)] = what
    return found


def glob_matches(pattern: str, path: str) -> bool:
    """Whether glob.glob(pattern) could list path: component by component, * never crossing a /."""
    wanted, parts = pattern.split("/"), path.split("/")
    return len(wanted) == len(parts) and all(fnmatch.fnmatchcase(p, w) for w, p in zip(wanted, parts, strict=True))


def log_pattern_problem(pattern: str) -> str | None:
    """Why a log pattern cannot be used, or None."""
    try:
        canonical_form = canonical_pattern(pattern)
    except Refused as exc:
        return str(exc)
    if _unclosed_bracket(pattern):
        return f"{pattern!r}: a '[' is not closed (write [[] for a literal bracket)."
    for path, what in own_files():
        if glob_matches(canonical_form, path):
            return f"{pattern!r} would match glmadmin's own {what} ({path}); make the pattern name only log files."
    # Unlike a cleanup root, a pattern may lie in a directory that also holds glmadmin's files: it can only
    # reach the names it matches, and those were just checked.
    return allowed_problem(_fixed_directory(canonical_form))


def validate_log_patterns(text: str) -> None:
    """Log file globs are absolute (the logs live in different places) and judged like roots."""
    patterns = split_patterns(text)
    if not patterns:
        raise ValidationError("Give at least one pattern, e.g. /var/lib/glmadmin/engines/*/engine.log.")
    problems = [problem for problem in map(log_pattern_problem, patterns) if problem]
    if problems:
        raise ValidationError(problems)

