"""One real engine for the chat package: started by the first test that asks for `engine`, adopted by every
later test's row (the consumer's and the browser's modules alike), killed when the package is done. An engine
start is the costliest step of these tests (40-90 s on the 2-core CI machine)."""

from tests.support import chat as chat_support

demo_model, no_engine_left_behind = chat_support.engine_fixtures("package")
