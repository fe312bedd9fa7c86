"""The remedy ladder's first step against the real vLLM (CPU build, the demo model): POST /reset_prefix_cache, one
of vLLM's development endpoints, answers {"success": true} on an engine started with VLLM_SERVER_DEV_MODE=1 (which
glmadmin sets with sleep mode; here by the row's own environment, since the CPU build has no sleep mode), and the
engine serves on afterwards. The refusals and the rest of the ladder are tested against the sleep responder
(tests/monitoring/telemetry/rules/test_remedy.py)."""

import pytest

from glmadmin.lib import processes
from inference import demo, engine_client, remedy
from inference.models import Engine
from inference.models import EngineState as S
from tests.support.engines import require_runtime, step_until
from tests.support.processes import free_port

STARTUP = 240


@pytest.fixture
def engine(transactional_db, tmp_path):
    require_runtime()
    model = demo.make_model(tmp_path / "demo")
    row = Engine.objects.create(name="reset", port=free_port(), model=str(model), served_model_name="demo",
                                enforce_eager=True, shutdown_timeout=10, extra_args=demo.ENGINE_ARGS,
                                env={"VLLM_SERVER_DEV_MODE": "1"})
    yield row
    row.refresh_from_db()
    if row.pid:
        segments = processes.shared_memory(row.pid)
        processes.kill_group(row.pid)
        processes.remove_shared_memory(segments)


def test_the_prefix_cache_is_reset_on_a_real_engine(engine):
    engine = step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")
    assert engine_client.generate_one_token(engine).ok  # something in the cache
    taken = remedy.reset_prefix_cache(engine)
    assert taken.done and taken.step == remedy.PREFIX_CACHE, taken.note
    assert taken.note.startswith("prefix cache reset in ")
    assert engine_client.generate_one_token(engine).ok  # and it serves on
