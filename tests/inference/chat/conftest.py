"""One real engine for the chat package: started by the first test that asks for `engine`, adopted by every
later test's row (the consumer's and the browser's modules alike), killed when the package is done. An engine
start is the costliest step of these tests (40-90 s on the 2-core CI machine)."""

import pytest

from tests.support import chat as chat_support


@pytest.fixture(scope="package")
def demo_model(tmp_path_factory):
    return chat_support.make_demo_model(tmp_path_factory)


@pytest.fixture(scope="package", autouse=True)
def no_engine_left_behind():
    yield
    chat_support.kill_engine()
