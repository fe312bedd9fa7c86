"""Engines as another OS user (GLMADMIN_ENGINE_USER): who that is, and what it may and may not touch.

Any code a model brings runs in its engine. Run as a user of its own, an engine cannot read glmadmin's data
directory (database, secret key, Redis socket), which is kept at mode 0700; it writes only in a home directory
of its own (caches), outside the data directory. glmadmin itself must be root to start a process as another
user; the switch is made with setgroups/setgid/setuid before exec (logwriter.py), never through a shell.
"""

import os
import pwd
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int


def lookup(name: str) -> User:
    entry = pwd.getpwnam(name)
    return User(entry.pw_name, entry.pw_uid, entry.pw_gid)


def problem(name: str, data_dir: Path, home_dir: Path, engine_python: Path) -> str | None:
    """Why engines cannot run as `name` here (one line), or None."""
    setting = f"GLMADMIN_ENGINE_USER={name}"
    try:
        user = lookup(name)
    except KeyError:
        return f"{setting}: there is no such user on this machine"
    if user.uid == 0:
        return f"{setting}: the engine user must not be root; give an unprivileged user of its own"
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid()).pw_name
        return (f"{setting}: glmadmin runs as {me} (uid {os.geteuid()}), but only root can start engines as "
                f"another user; run glmadmin as root or unset GLMADMIN_ENGINE_USER")
    if home_dir == data_dir or data_dir in home_dir.parents:
        return (f"GLMADMIN_ENGINE_HOME_DIR={home_dir} is inside the data directory, which the engine user "
                f"cannot enter; choose a directory outside {data_dir}")
    if engine_python.exists() and (closed := closed_to(user, engine_python)):
        return (f"{setting} cannot run the engine runtime {engine_python}: {closed} is closed to it (mode "
                f"{closed.stat().st_mode & 0o777:o}); install the runtime from a Python that user can read")
    return None


def closed_to(user: User, path: Path) -> Path | None:
    """The first directory on the way to `path` (through its symlinks) that `user` cannot enter, or the file
    itself if it cannot read and run it; None if it can. From the mode bits, as the kernel decides for a
    process with the user's uid and primary group only (ACLs are not read)."""
    real = Path(os.path.realpath(path))
    for directory in [*reversed(Path(path).absolute().parents), *reversed(real.parents)]:
        if not _allowed(user, directory, 0o1):
            return directory
    return None if _allowed(user, real, 0o5) else real


def unreadable(user: User, directory: Path) -> Path | None:
    """The first file directly in `directory` that `user` cannot read (a model saved by transformers as root
    has its weights at mode 0600), or None."""
    for path in sorted(directory.iterdir()):
        if path.is_file() and not _allowed(user, path, 0o4):
            return path
    return None


def _allowed(user: User, path: Path, bits: int) -> bool:
    try:
        info = path.stat()
    except OSError:
        return False
    shift = 6 if info.st_uid == user.uid else 3 if info.st_gid == user.gid else 0
    return (info.st_mode >> shift) & bits == bits


def keep_private(data_dir: Path) -> None:
    """The data directory: glmadmin's user only (mode 0700), so the engine user can neither list nor enter it."""
    data_dir.mkdir(parents=True, exist_ok=True)
    if data_dir.stat().st_mode & 0o077:
        data_dir.chmod(0o700)


def home(path: Path, user: User) -> Path:
    """The engine's own directory (HOME, caches): owned by the engine user, mode 0700. Its parents are made
    enterable (0755) by whoever creates them here; they stay glmadmin's."""
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    path.mkdir(mode=0o700, exist_ok=True)
    os.chown(path, user.uid, user.gid)
    return path


def environment(user: User, home_path: Path) -> dict[str, str]:
    """What changes in an engine's environment when it runs as `user`: its own name and home (the worker's
    HOME and XDG cache are glmadmin's, which the engine may not write)."""
    return {"HOME": str(home_path), "USER": user.name, "LOGNAME": user.name,
            "XDG_CACHE_HOME": str(home_path / ".cache")}
