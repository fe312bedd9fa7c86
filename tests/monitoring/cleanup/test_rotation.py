"""Log rotation by size: the engine's writer never loses a line; closed logs are rotated by the cleanup run."""

import gzip
import json
import os
import sys
import time

import pytest

from glmadmin.lib import processes
from glmadmin.lib.logwriter import RotatingLog
from monitoring.cleanup.logs import maintain, write_config
from monitoring.models import CleanupRun, LogPolicy

LINES = 20000
# Writes numbered lines as fast as it can, half to stdout and half to stderr, one write per line.
WRITER = f"""
import sys
for i in range({LINES}):
    stream = sys.stdout if i % 2 else sys.stderr
    stream.write(f"line {{i:06d}} " + "x" * (i % 50) + "\\n")
    stream.flush()
"""


def read_all(directory) -> list[str]:
    lines = []
    for path in directory.iterdir():
        if path.name.startswith("engine.log"):
            opener = gzip.open if path.suffix == ".gz" else open
            with opener(path, "rt") as fh:
                lines += fh.read().splitlines()
    return lines


def wait_for_group(pgid: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while processes.group_alive(pgid):  # the writer exits once the command's output is all written
        assert time.monotonic() < deadline, "the log writer did not finish"
        time.sleep(0.05)


def test_rotation_under_a_continuous_writer_keeps_every_line(tmp_path):
    log = tmp_path / "engine.log"
    config = tmp_path / "log-policies.json"
    config.write_text(json.dumps([{"patterns": [str(log)], "max_bytes": 16384, "keep": 1000, "compress": True}]))
    proc = processes.spawn([sys.executable, "-c", WRITER], dict(os.environ), log, cwd=tmp_path, log_config=config)
    assert proc.pid == os.getpgid(proc.pid)  # the command leads its group; the writer is in it
    wait_for_group(proc.pid)
    lines = read_all(tmp_path)
    numbers = [int(line.split()[1]) for line in lines]
    assert sorted(numbers) == list(range(LINES))  # every line exactly once, none cut in two
    rotated = [p.name for p in tmp_path.iterdir() if p.name.startswith("engine.log.")]
    assert len(rotated) > 20 and all(name.endswith(".gz") for name in rotated)
    for name in rotated:  # each file within the limit
        assert len(gzip.decompress((tmp_path / name).read_bytes())) <= 16384, name


def test_the_writer_keeps_only_the_newest_rotated_files_and_follows_config_changes(tmp_path):
    path, config = tmp_path / "engine.log", tmp_path / "policies.json"
    log = RotatingLog(str(path), max_bytes=100, keep=2, compress=False, config=str(config))
    for i in range(30):
        log.write(f"{i:09d}\n".encode())  # 10 bytes a line: a rotation every 10 lines
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("engine")) == [
        "engine.log", "engine.log.1", "engine.log.2"]
    assert path.read_text().splitlines() == [f"{i:09d}" for i in range(20, 30)]
    config.write_text(json.dumps([{"patterns": [str(tmp_path / "*.log")], "max_bytes": 1000, "keep": 3}]))
    log = RotatingLog(str(path), max_bytes=100, keep=2, compress=False, config=str(config))
    assert (log.max_bytes, log.keep) == (1000, 3)
    log.close()


@pytest.mark.django_db
def test_the_cleanup_run_rotates_closed_logs_and_leaves_open_ones_to_their_writer(tmp_path):
    closed, held = tmp_path / "closed.log", tmp_path / "held.log"
    closed.write_text("old line\n" * 1000)
    held.write_text("busy line\n" * 1000)
    for n in range(1, 5):
        (tmp_path / f"closed.log.{n}.gz").write_bytes(gzip.compress(b"rotated\n"))
    policy = LogPolicy.objects.create(name="logs", patterns=str(tmp_path / "*.log"), max_file_size="1K", keep=3)
    with open(held, "a"):
        run = maintain(policy, trigger=CleanupRun.Trigger.SCHEDULE)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["closed.log.1.gz", "closed.log.2.gz", "closed.log.3.gz", "held.log"]
    assert gzip.decompress((tmp_path / "closed.log.1.gz").read_bytes()) == b"old line\n" * 1000
    assert run.skipped == {"open_by_writer": 1} and run.status == CleanupRun.Status.DONE


@pytest.mark.django_db
def test_saving_a_log_policy_reaches_the_running_writers(tmp_path, settings):
    LogPolicy.objects.create(name="logs", patterns="/srv/*/engine.log", max_file_size="2M", keep=7)
    write_config()
    written = json.loads((settings.DATA_DIR / "log-policies.json").read_text())
    assert {"name": "logs", "patterns": ["/srv/*/engine.log"], "max_bytes": 2 * 1024 * 1024, "keep": 7,
            "compress": True} in written
