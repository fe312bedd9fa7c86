"""Cleanup speed: a recorded cleanup run against `find ROOT -type f -mmin +N -delete`, on identical trees.

Builds identical trees of FILES files (nested directories, mixed ages
from 1 hour to 20 days, 1 KiB each) on the same disk, then times, in one run:
(A) a dry run of the policy (scan and plan, recorded), (W) find's own stat
walk of the same files (`find ROOT -type f -mmin +10080`, nothing removed or
printed: what one process's lstat of every name costs on this machine now, the
floor a dry run is measured against; A and W go --dry-repeats times each, in
turns, and a round keeps their medians), (B) the real run (scan, plan, open-file
check, remove, recorded) on one tree, and (F)
`find ROOT -type f -mmin +10080 -delete` on another, each timed phase on a
settled disk (sync, then no I/O for 1 s), B and F taking turns to go first. Checks that the trees end with
exactly the same files, and prints B / F. With --old CHECKOUT (a git worktree of an older commit), that
checkout's A and B run too, on a third tree, taking turns with this one's and with find: old against new in
one run, whatever the machine's load. Each glmadmin run is a child process of its checkout's code, timed
inside from a settled disk. Goals: B / F <= 1.2, and the
dry run at 300,000 files/s or more (with the mount-table and mount-id checks,
the open-file check, and, before each unlink, the kernel asked about the file).

The kernel stamps every new file's ctime "now", and a run counts ctime as
age, so the run's clock is set one minimum age (+1 h) ahead and its tree's
mtimes by the same amount: each file has the same age for both contenders.

    .venv/bin/python bench/cleanup/run.py [--files 200000] [--rounds 4] [--dry-repeats 3] [--dir /var/tmp]
        [--old CHECKOUT]
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
from bench.common import ROOT, Scratch, median  # noqa: E402

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


def contender(args) -> None:
    """In a child process: one run of the policy with the glmadmin code at args.code, timed from a settled disk.

    Old and new code run alike, each in its own process (its modules imported before the clock starts).
    """
    code = Path(args.code).resolve()
    sys.path.insert(0, str(code))
    import django

    django.setup()
    from monitoring.cleanup import run as cleanup_run
    from monitoring.cleanup.run import run_policy
    from monitoring.models import CleanupPolicy, CleanupRun

    assert Path(cleanup_run.__file__).is_relative_to(code), f"{cleanup_run.__file__} is not from {code}"

    policy = CleanupPolicy.objects.get(name=args.policy)
    settle(Path(policy.root).parent)
    started = time.perf_counter()
    run = run_policy(policy, trigger=CleanupRun.Trigger.COMMAND, dry_run=args.dry_run, now=time.time() + SHIFT)
    took = time.perf_counter() - started
    print(f"RESULT {took:.6f} {run.files_removed} {run.status}", flush=True)


def run_code(code: str, policy: str, dry_run: bool) -> tuple[int, float]:
    """(files removed, seconds) of one run of the glmadmin checkout code, in a child process."""
    command = [sys.executable, __file__, "--contender", "--code", code, "--policy", policy]
    # In the checkout: Celery's Django fixup puts the working directory first on sys.path.
    done = subprocess.run(command + (["--dry-run"] if dry_run else []), cwd=code, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"{code} failed: {done.stderr[-3000:]}")
    _, took, removed, status = done.stdout.strip().splitlines()[-1].split()
    return int(removed), float(took)


def one_round(work: Path, files: int, seed: int, codes: dict[str, str], dry_repeats: int = 3) -> dict:
    from monitoring.models import CleanupPolicy

    file_ages = ages(files, seed)
    now = time.time()
    trees = {name: work / name for name in [*codes, "find"]}
    for name, tree in trees.items():
        build(tree, file_ages, now if name == "find" else now + SHIFT)
    expected = sum(1 for a in file_ages if a > MIN_AGE_H * 3600)
    subprocess.run(["sync"], check=True)
    # Same cache state for all: one stat walk of each tree first.
    for tree in trees.values():
        subprocess.run(["find", str(tree), "-type", "f", "-mmin", "+0"], check=True, stdout=subprocess.DEVNULL)
    for name in codes:
        CleanupPolicy.objects.filter(name=f"bench-{name}").delete()
        CleanupPolicy.objects.create(name=f"bench-{name}", root=str(trees[name]), max_size="0",
                                     min_age_hours=MIN_AGE_H)

    # Every contender goes first as often as the others (rounds a multiple of their number); each phase starts
    # on a settled disk.
    names = [*codes, "find"]
    order = names[seed % len(names):] + names[:seed % len(names)]
    result = {"removed": expected, "first": order[0], "load": load()}
    walk = ["find", str(trees["find"]), "-type", "f", "-mmin", f"+{MIN_AGE_H * 60}"]
    timed = {name: [] for name in order}
    # The dry runs and find's stat walk are short and at the mercy of the machine's load: each goes dry_repeats
    # times, in turns (the order reversed every time); a round keeps each one's median.
    for repeat in range(dry_repeats):
        for name in (order if repeat % 2 == 0 else order[::-1]):
            if name == "find":
                settle(work)
                started = time.perf_counter()
                subprocess.run(walk, check=True, stdout=subprocess.DEVNULL)
                timed[name].append(time.perf_counter() - started)
            else:
                removed, took = run_code(codes[name], f"bench-{name}", dry_run=True)
                assert removed == expected, (name, removed, expected)
                timed[name].append(took)
    for name, times in timed.items():
        result["find walk" if name == "find" else f"dry {name}"] = median(times)
    find = [*walk, "-delete"]
    for name in order:
        if name == "find":
            settle(work)
            started = time.perf_counter()
            subprocess.run(find, check=True)
            result["find"] = time.perf_counter() - started
        else:
            removed, result[name] = run_code(codes[name], f"bench-{name}", dry_run=False)
            assert removed == expected, (name, removed, expected)
    left = survivors(trees["find"])
    assert all(survivors(tree) == left for tree in trees.values()), "the trees differ after cleanup"
    for tree in trees.values():
        shutil.rmtree(tree)
    return result


def load() -> str:
    """The load averages (1, 5, 15 min) as /proc/loadavg gives them: how shared the machine was."""
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=4,
                        help="a multiple of the contenders' number: each goes first equally often")
    parser.add_argument("--dir", default="/var/tmp", help="where the trees go (same disk for all)")
    parser.add_argument("--dry-repeats", type=int, default=3,
                        help="dry runs (and find stat walks) per round, taking turns; a round keeps the medians")
    parser.add_argument("--old", help="another checkout of glmadmin (a git worktree of an older commit): its "
                                      "dry and real runs alternate with this one's, on a third identical tree")
    parser.add_argument("--contender", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--code", help=argparse.SUPPRESS)
    parser.add_argument("--policy", help=argparse.SUPPRESS)
    parser.add_argument("--dry-run", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        return contender(args)
    codes = {"new": str(ROOT)} | ({"old": str(Path(args.old).resolve())} if args.old else {})
    scratch = Scratch("bench-cleanup")
    work = Path(tempfile.mkdtemp(prefix="cleanup-trees-", dir=args.dir))
    try:
        results = []
        for n in range(args.rounds):
            r = one_round(work, args.files, n, codes, args.dry_repeats)
            results.append(r)
            line = [f"round {n + 1}: {args.files} files, {r['removed']} removed, load {r['load']}"]
            line += [f"dry run {name} {r[f'dry {name}']:.2f} s" for name in codes]
            line.append(f"find stat walk {r['find walk']:.2f} s")
            line += [f"real run {name} {r[name]:.2f} s" for name in codes] + [f"find -delete {r['find']:.2f} s"]
            line += [f"{name}/find {r[name] / r['find']:.2f}" for name in codes]
            if "old" in codes:
                line.append(f"new/old real {r['new'] / r['old']:.2f} dry {r['dry new'] / r['dry old']:.2f}")
            print(" | ".join(line) + f" ({r['first']} first)", flush=True)
        print(f"median over {args.rounds} rounds ({len(codes)} code contenders and find, taking turns first):")
        for name in codes:
            dry = median([r[f"dry {name}"] for r in results])
            real = median([r[name] for r in results])
            paired = median([r[name] / r["find"] for r in results])
            print(f"  {name}: dry run {dry:.2f} s ({args.files / dry:,.0f} files/s) | real run {real:.2f} s | "
                  f"real/find {paired:.2f} (median of the rounds' ratios)")
        walked = median([r["find walk"] for r in results])
        print(f"  find stat walk {walked:.2f} s ({args.files / walked:,.0f} files/s); dry run / find stat walk: "
              + ", ".join(f"{name} {median([r[f'dry {name}'] / r['find walk'] for r in results]):.2f}"
                          for name in codes) + " (medians of the rounds' ratios)")
        found = median([r["find"] for r in results])
        print(f"  find -delete {found:.2f} s ({results[0]['removed'] / found:,.0f} files removed/s)")
        if "old" in codes:
            print(f"  new/old: real run {median([r['new'] / r['old'] for r in results]):.2f}, dry run "
                  f"{median([r['dry new'] / r['dry old'] for r in results]):.2f} (medians of the rounds' ratios)")
        print("  goals: real/find <= 1.2, dry run >= 300,000 files/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        scratch.close()
        shutil.rmtree(scratch.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
