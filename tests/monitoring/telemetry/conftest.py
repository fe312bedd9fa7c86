"""The telemetry package's fixtures: each test's own Xid listener, and one real engine for the package
(tests/support/chat.py's, on the chat's port), started by the first test that asks for `engine` (the diagnosis,
then the sampling of a real completion), adopted by each later test's row, killed when the package is done. An
engine start is the costliest step of these tests."""

import pytest

from monitoring.telemetry import xid_listener
from tests.support import chat as chat_support


@pytest.fixture(autouse=True)
def _xid_listener_per_test(monkeypatch):
    """A sampling cycle with GPUs starts the Xid listener thread in this process: each test gets its own
    (waking every 0.2 s instead of 5 s, so that it stops quickly), stopped when the test ends."""
    monkeypatch.setattr(xid_listener, "WAIT_MS", 200)
    yield
    xid_listener.stop()


demo_model, no_engine_left_behind = chat_support.engine_fixtures("package")
