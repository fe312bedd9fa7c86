"""One real engine for the telemetry package (tests/support/chat.py's, on the chat's port): started by the first
test that asks for `engine` (the diagnosis, then the sampling of a real completion), adopted by each later test's
row, killed when the package is done. An engine start is the costliest step of these tests."""

import pytest

from tests.support import chat as chat_support


@pytest.fixture(scope="package")
def demo_model(tmp_path_factory):
    return chat_support.make_demo_model(tmp_path_factory)


@pytest.fixture(scope="package", autouse=True)
def no_engine_left_behind():
    yield
    chat_support.kill_engine()
