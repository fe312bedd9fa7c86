"""The fixture of engines whose model loads until the test says so (tests/support/slow_engine.py), started and
supervised by the real supervisor; used by the restart scenario tests of this folder."""

import psutil
import pytest

from glmadmin.lib import processes
from inference.models import Engine
from tests.support.engines import engine_processes, slow_engine_runtime
from tests.support.processes import free_port


@pytest.fixture
def slow_engine(settings, tmp_path):
    """make(**fields) -> (engine, model directory): an engine on a free port whose runtime is the slow stand-in.
    Every process started for it is stopped afterwards (found by its port and model directory)."""
    settings.ENGINE_PYTHON = str(slow_engine_runtime(tmp_path))
    made = []

    def make(**fields):
        model = tmp_path / f"model-{len(made)}"
        model.mkdir()
        engine = Engine.objects.create(name=f"slow-{len(made)}", port=free_port(), model=str(model),
                                       served_model_name="slow", shutdown_timeout=5, **fields)
        made.append((engine, model))
        return engine, model

    yield make
    for engine, model in made:
        for proc in ours(engine, model):
            processes.kill_group(proc.pid)


def ours(engine: Engine, model) -> list[psutil.Process]:
    """The live stand-in processes serving `engine`'s port for this model (none of anyone else's)."""
    found = []
    for proc in engine_processes(engine.port):
        try:
            if str(model) in proc.cmdline() and proc.status() != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except psutil.NoSuchProcess:
            pass
    return found
