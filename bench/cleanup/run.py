"""Cleanup speed: a recorded cleanup run against `find ROOT -type f -mmin +N -delete`, on identical trees.

Builds two identical trees of FILES files (nested directories, mixed ages
from 1 hour to 20 days, 1 KiB each) on the same disk, then times, in one run:
(A) a dry run of the policy (scan and plan, recorded), (B) the real run
(scan, plan, open-file check, remove, recorded) on one tree, and (F)
`find ROOT -type f -mmin +10080 -delete` on the other, each timed phase on a
settled disk (sync, then no I/O for 1 s), B and F taking turns to go first. Checks that both trees end with
exactly the same files, and prints B / F. Goals: B / F <= 1.2, and the
dry run at 300,000 files/s or more (with the mount-table and mount-id checks,
the open-file check, and, before each unlink, the kernel asked about the file).

The kernel stamps every new file's ctime "now", and a run counts ctime as
age, so the run's clock is set one minimum age (+1 h) ahead and its tree's
mtimes by the same amount: each file has the same age for both contenders.

    .venv/bin/python bench/cleanup/run.py [--files 200000] [--rounds 4] [--dir /var/tmp]
"""

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from bench.common import Scratch, median  # noqa: E402

MIN_AGE_H = 168
SHIFT = (MIN_AGE_H + 1) * 3600
PAYLOAD = b"x" * 1024


def ages(count: int, seed: int) -> list[float]:
    """Ages in seconds, 1 h .. 20 days, none within an hour of the cutoff (so neither side flips on timing)."""
    rng = random.Random(seed)
    cutoff, result = MIN_AGE_H * 3600, []
    while len(result) < count:
        age = rng.uniform(3600, 20 * 86400)
        if abs(age - cutoff) > 3600:
            result.append(age)
    return result


def build(root: Path, file_ages: list[float], base: float) -> None:
    """200 top directories x 10 subdirectories, files spread evenly; mtime = base - age."""
    for i, age in enumerate(file_ages):
        d = root / f"t{i % 200:03d}" / f"s{(i // 200) % 10}"
        if i < 2000:
            d.mkdir(parents=True, exist_ok=True)
        path = d / f"f{i:07d}.bin"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, PAYLOAD)
        os.close(fd)
        os.utime(path, (base - age, base - age))


def survivors(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*.bin")}


def settle(path: Path, quiet_s: float = 1.0, limit_s: float = 60.0) -> float:
    """sync, then wait until the disk holding path does nothing for quiet_s (its discards of the files the other
    contender removed included, which sync does not wait for); gives up after limit_s. Returns the wait."""
    subprocess.run(["sync"], check=True)
    st = os.stat(path)
    counters = Path(f"/sys/dev/block/{os.major(st.st_dev)}:{os.minor(st.st_dev)}/stat")
    started = time.monotonic()
    before = counters.read_text()
    while time.monotonic() - started < limit_s:
        time.sleep(quiet_s)  # the disk's own counters are the signal; this only paces the reading of them
        now = counters.read_text()
        if now == before:
            break
        before = now
    return time.monotonic() - started


def timed(call, work: Path):
    """(what call returns, seconds it took), from a settled disk."""
    settle(work)
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def one_round(work: Path, files: int, seed: int) -> dict:
    from monitoring.cleanup.run import run_policy
    from monitoring.models import CleanupPolicy, CleanupRun

    file_ages = ages(files, seed)
    ours, theirs = work / "ours", work / "theirs"
    now = time.time()
    build(ours, file_ages, now + SHIFT)
    build(theirs, file_ages, now)
    expected = sum(1 for a in file_ages if a > MIN_AGE_H * 3600)
    subprocess.run(["sync"], check=True)
    # Same cache state for both: one stat walk of each tree first.
    subprocess.run(["find", str(ours), "-type", "f", "-mmin", "+0"], check=True, stdout=subprocess.DEVNULL)
    subprocess.run(["find", str(theirs), "-type", "f", "-mmin", "+0"], check=True, stdout=subprocess.DEVNULL)

    CleanupPolicy.objects.filter(name="bench").delete()
    policy = CleanupPolicy.objects.create(name="bench", root=str(ours), max_size="0", min_age_hours=MIN_AGE_H)

    dry, t_dry = timed(lambda: run_policy(policy, trigger=CleanupRun.Trigger.COMMAND, dry_run=True,
                                          now=time.time() + SHIFT), work)
    find = ["find", str(theirs), "-type", "f", "-mmin", f"+{MIN_AGE_H * 60}", "-delete"]
    contenders = {"find": lambda: subprocess.run(find, check=True),
                  "real": lambda: run_policy(policy, trigger=CleanupRun.Trigger.COMMAND, now=time.time() + SHIFT)}
    # Each goes first in every other round (use an even number of rounds), and each starts on a settled disk.
    order = ["find", "real"] if seed % 2 == 0 else ["real", "find"]
    results = {name: timed(contenders[name], work) for name in order}
    (real, t_real), t_find = results["real"], results["find"][1]

    assert dry.files_removed == real.files_removed == expected, (dry.files_removed, real.files_removed, expected)
    assert survivors(ours) == survivors(theirs), "the two trees differ after cleanup"
    for tree in (ours, theirs):
        shutil.rmtree(tree)
    return {"removed": expected, "dry": t_dry, "real": t_real, "find": t_find, "first": order[0]}


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=4, help="even: find and the real run go first equally often")
    parser.add_argument("--dir", default="/var/tmp", help="where the trees go (same disk for both)")
    args = parser.parse_args()
    scratch = Scratch("bench-cleanup")
    work = Path(tempfile.mkdtemp(prefix="cleanup-trees-", dir=args.dir))
    try:
        results = []
        for n in range(args.rounds):
            r = one_round(work, args.files, seed=n)
            results.append(r)
            print(f"round {n + 1}: {args.files} files, {r['removed']} removed | dry run {r['dry']:.2f} s | "
                  f"real run {r['real']:.2f} s | find -delete {r['find']:.2f} s | "
                  f"real/find {r['real'] / r['find']:.2f} ({r['first']} first)", flush=True)
        dry, real, found = (median([r[k] for r in results]) for k in ("dry", "real", "find"))
        paired = median([r["real"] / r["find"] for r in results])
        print(f"median over {args.rounds}: dry run {dry:.2f} s ({args.files / dry:,.0f} files/s) | real run "
              f"{real:.2f} s | find -delete {found:.2f} s ({args.files / found:,.0f} files/s) | "
              f"real/find {paired:.2f} (median of the rounds' ratios) "
              f"(goals: real/find <= 1.2, dry run >= 300,000 files/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        scratch.close()
        shutil.rmtree(scratch.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
