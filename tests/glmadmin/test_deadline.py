"""glmadmin.lib.deadline: a call that blocks is given up on at its deadline, without piling up threads.

The blocking call here waits on an Event the test holds (the real hung mount is in
tests/monitoring/disks/test_hung_mount.py).
"""

import threading

import pytest

from glmadmin.lib import deadline
from tests.support.processes import wait_for


@pytest.fixture
def gate():
    release = threading.Event()
    yield release
    release.set()  # whatever the test did, no thread stays blocked


def blocked(release: threading.Event, answer="done"):
    release.wait(120)
    return answer


def test_a_call_that_returns_in_time_gives_its_result_and_frees_its_key():
    assert deadline.run("quick", lambda a, b: a + b, 2, 3, seconds=30, what="adding") == 5
    assert "quick" not in deadline.hung()


def test_the_call_s_error_is_raised_to_the_caller():
    def fails(path):
        raise FileNotFoundError(2, "No such file or directory", path)

    with pytest.raises(FileNotFoundError):
        deadline.run("missing", fails, "/nope", seconds=30, what="statvfs on /nope")


def test_a_hung_call_is_stalled_at_its_deadline_and_joined_not_restarted(gate):
    with pytest.raises(deadline.Stalled) as stalled:
        deadline.run("hangs", blocked, gate, seconds=0.2, what="statvfs on /mnt/models")
    assert str(stalled.value) == "statvfs on /mnt/models did not return in 0.2 s"
    assert not isinstance(stalled.value, OSError)  # an `except OSError` must not take a hang for an answer

    starts = []
    for _ in range(5):  # asked again while it hangs: the same call, already past its deadline
        with pytest.raises(deadline.Stalled):
            deadline.run("hangs", lambda: starts.append(1), seconds=0.2, what="statvfs on /mnt/models")
    assert starts == []
    assert len([t for t in threading.enumerate() if t.name == "deadline hangs"]) == 1

    gate.set()  # the mount answers: the key is free and the next call runs afresh
    wait_for(lambda: "hangs" not in deadline.hung(), 30, "the hung call to return")
    assert deadline.run("hangs", lambda: "fresh", seconds=30, what="statvfs on /mnt/models") == "fresh"


def test_calls_started_together_share_their_deadline(gate):
    slow = deadline.start("slow", blocked, gate)
    quick = deadline.start("quick-2", lambda: 42)
    with pytest.raises(deadline.Stalled):
        slow.wait(0.2, "slow")
    assert quick.wait(0.2, "quick") == 42


def test_new_calls_are_refused_once_too_many_hang(gate, monkeypatch):
    monkeypatch.setattr(deadline, "MAX_HUNG", 3)
    for n in range(3):
        deadline.start(f"stuck-{n}", blocked, gate)
    started = []
    with pytest.raises(deadline.Stalled) as refused:
        deadline.run("one-more", started.append, 1, seconds=30, what="statvfs on /data")
    assert refused.value.refused and started == []
    assert "statvfs on /data was not started" in str(refused.value)
    gate.set()
    wait_for(lambda: not any(k.startswith("stuck-") for k in deadline.hung()), 30, "the stuck calls to return")
    assert deadline.run("one-more", lambda: "ran", seconds=30, what="statvfs on /data") == "ran"
