"""What the self-checking GPU scripts beside this file share: a line per check, the failed ones kept for the exit
status (the number of failed checks), and the time since the run began."""

import time

FAILED: list[str] = []


def stamp(t0: float) -> str:
    return f"[{time.time() - t0:7.1f}s]"


def check(ok: bool, what: str) -> bool:
    print(f"  CHECK {'ok  ' if ok else 'FAIL'} {what}", flush=True)
    if not ok:
        FAILED.append(what)
    return ok
