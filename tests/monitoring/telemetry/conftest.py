import pytest

from monitoring.telemetry import xid_listener


@pytest.fixture(autouse=True)
def _xid_listener_per_test(monkeypatch):
    """A sampling cycle with GPUs starts the Xid listener thread in this process: each test gets its own
    (waking every 0.2 s instead of 5 s, so that it stops quickly), stopped when the test ends."""
    monkeypatch.setattr(xid_listener, "WAIT_MS", 200)
    yield
    xid_listener.stop()
