"""The last lines of a log file, bounded and made safe to show: for pages that show a process's log.

A log is written by a process we do not control (an engine, its libraries): it may hold invalid UTF-8, terminal
colour codes, progress bars redrawn with carriage returns, NUL bytes or one line of megabytes. Whatever it holds,
the tail reads at most max_bytes from the end, returns at most max_lines lines of at most max_line_chars
characters each, and no control character but the tab.
"""

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

# Terminal escape sequences (CSI, e.g. colours "ESC[32m", and OSC titles): dropped, they carry no text.
ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?")
# C0 and C1 controls but the tab, DEL, and the Unicode line/paragraph separators, shown as U+FFFD.
CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
REPLACEMENT = "\ufffd"


@dataclass
class Tail:
    lines: list[str] = field(default_factory=list)
    size: int = 0  # the file's size in bytes
    cut: bool = False  # older lines exist that are not shown
    missing: bool = False  # no such file (or not a regular file)


def clean(line: str, max_chars: int) -> str:
    """One line as a terminal would show it, with no control characters left and its length bounded."""
    if "\r" in line:  # a progress bar redrawn in place: what stays on screen is the last drawing
        line = next((part for part in reversed(line.split("\r")) if part), "")
    line = CONTROL.sub(REPLACEMENT, ANSI.sub("", line))
    if len(line) > max_chars:
        line = f"{line[:max_chars]}… ({len(line) - max_chars:,} more characters)"
    return line


def tail(path: Path, max_bytes: int = 64 * 1024, max_lines: int = 200, max_line_chars: int = 2000) -> Tail:
    try:
        # O_NONBLOCK: a FIFO put where the log should be must not hang the page (it is refused below).
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return Tail(missing=True)
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            return Tail(missing=True)
        start = max(0, info.st_size - max_bytes)
        fh.seek(start)
        data = fh.read(max_bytes)
    text = data.decode("utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the file ends with a newline: no empty last line
    cut = start > 0
    if cut and len(lines) > 1:
        lines.pop(0)  # the first line read is most likely the end of a longer one
    if len(lines) > max_lines:
        lines, cut = lines[-max_lines:], True
    return Tail(lines=[clean(line, max_line_chars) for line in lines], size=info.st_size, cut=cut)
