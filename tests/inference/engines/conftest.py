from .slow_engines import slow_engine  # noqa: F401 - engines whose model loads until the test says so
