"""A real vLLM engine (the demo model) for the chat tests, on the chat's own ports."""


import pytest

from glmadmin.lib import processes
from glmadmin.lib import redis as rd
from inference import demo, engine_client
from inference.gateway import limits, routing
from inference.gateway.keys import Caller
from inference.models import Engine
from inference.models import EngineState as S
from tests.support.engines import engine_processes, require_runtime, step_until

PORT = 8150
STARTUP = 240
MODEL = "demo-chat"
# The chat tests' demo model has no end-of-sequence token (make_model(endless=True)): every answer runs to
# its max_tokens. The demo engine writes a few hundred tokens a second here (230-330 measured); 60,000 (its
# context stretched past the 4,096 positions of the model) keep it generating for minutes, long enough to see
# it running, then stop it. (250,000 would be safer still, but vLLM's CPU build then takes minutes to
# start.) The chat's and the gateway's max_tokens caps must allow it.
# Sampled, not greedy: greedy decoding of random weights can settle into a loop of a token that decodes to
# no text (the special </s>), and then the page sees nothing more for the rest of the answer.
LONG = {"temperature": 1.0, "max_tokens": 60_000}
CONTEXT = 65_536


@pytest.fixture
def long_answers(settings):
    settings.CHAT_MAX_TOKENS = settings.GATEWAY_MAX_TOKENS = LONG["max_tokens"]


def make_demo_model(tmp_path_factory):
    require_runtime()
    return demo.make_model(tmp_path_factory.mktemp("models") / "demo", endless=True)


def kill_engine() -> None:
    for proc in engine_processes(PORT):
        segments = processes.shared_memory(proc.pid)
        processes.kill_group(proc.pid)
        processes.remove_shared_memory(segments)


def engine_fixtures(scope: str):
    """(demo_model, no_engine_left_behind) fixtures of `scope`: a package's conftest.py takes them as "package"
    to share one engine among its modules (started by the first test that asks for `engine`)."""

    @pytest.fixture(scope=scope, name="demo_model")
    def model(tmp_path_factory):
        return make_demo_model(tmp_path_factory)

    @pytest.fixture(scope=scope, autouse=True, name="no_engine_left_behind")
    def cleanup():
        yield
        kill_engine()

    return model, cleanup


@pytest.fixture
def engine(transactional_db, demo_model):
    """Ready to serve. Each test's new row adopts the engine process started by the first one."""
    engine = Engine.objects.create(name="chat", port=PORT, model=str(demo_model), served_model_name=MODEL,
                                   enforce_eager=True, shutdown_timeout=5, max_model_len=CONTEXT,
                                   extra_args=demo.ENGINE_ARGS,
                                   env={"VLLM_ALLOW_LONG_MAX_MODEL_LEN": "1"})
    return step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")


def engine_metric(engine, name: str) -> int:
    values = engine_client.metric_values(engine, timeout=15)  # generous: the test machine's CPUs are shared
    assert values is not None, f"{engine.name} did not answer /metrics"
    return int(values[name])


def running(engine) -> int:
    """Requests the engine itself is generating for now."""
    return engine_metric(engine, "vllm:num_requests_running")


def generated(engine) -> int:
    """Tokens the engine has generated since it started: an aborted answer stops adding to them."""
    return engine_metric(engine, "vllm:generation_tokens_total")


def held(engine, user) -> dict[str, int]:
    """What is still held for an answer: the engine's running requests, the gateway's in-flight count for the
    engine and the user's busy slots."""
    caller = Caller("user", user.pk, user.username)
    return {"engine running": running(engine), "gateway in flight": routing.in_flight(engine.name),
            "user's busy slots": rd.client().zcard(limits.busy_key(caller))}


def nothing_held(engine, user) -> bool:
    """The engine generates nothing and the gateway counts nothing in flight for the engine or the user."""
    return not any(held(engine, user).values())


