"""The demo engine's real model (SmolLM2-135M-Instruct, fetched from PyPI and converted once) answers in real
language: a chat turn through the websocket consumer is asserted on its meaning. One engine start."""

import json
import time
from pathlib import Path

import pytest

from glmadmin.lib import processes
from inference import demo
from inference.models import Engine
from inference.models import EngineState as S
from tests.inference.chat.test_consumer import answer, connected, session_cookie
from tests.support.engines import engine_processes, require_runtime, step_until

PORT = 8152
MODEL = "smollm2"
STARTUP = 420  # ~35 s alone; minutes on the shared 2-core machine
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def real_model():
    require_runtime()
    started = time.monotonic()
    path = demo.real_model()  # made once per machine (the cache outlives the test's data dir)
    print(f"real model at {path} in {time.monotonic() - started:.0f} s")
    return path


@pytest.fixture(scope="module", autouse=True)
def no_smollm2_engine_left_behind():
    yield
    for proc in engine_processes(PORT):
        segments = processes.shared_memory(proc.pid)
        processes.kill_group(proc.pid)
        processes.remove_shared_memory(segments)


@pytest.fixture
def engine(transactional_db, real_model):
    engine = Engine.objects.create(name="smol", port=PORT, model=str(real_model), served_model_name=MODEL,
                                   enforce_eager=True, shutdown_timeout=5, max_model_len=2048,
                                   extra_args=demo.ENGINE_ARGS)
    return step_until(engine, lambda e: e.state == S.READY, STARTUP, "ready")


def test_the_cached_checkpoint_is_a_plain_llama_with_its_chat_template(real_model):
    config = json.loads((real_model / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and "quantization_config" not in config
    assert (real_model / "model.safetensors").stat().st_size > 250 * 2**20  # 134.5 M parameters, float16
    assert "<|im_start|>assistant" in (real_model / "chat_template.jinja").read_text()
    assert demo.real_model() == real_model  # cached: not made again


def test_a_fresh_demo_engine_serves_the_real_model():
    engine = demo.ensure_demo_engine(warn=pytest.fail)
    assert Path(engine.model) == demo.real_model() and engine.extra_args == demo.ENGINE_ARGS


async def test_the_capital_of_france_is_paris(engine, django_user_model):
    _, cookie = await session_cookie(django_user_model)
    ws = await connected(cookie)
    await ws.send_json_to({"type": "send", "model": MODEL, "temperature": 0, "max_tokens": 48,
                           "messages": [{"role": "user", "content": "What is the capital of France?"}]})
    tokens, done = await answer(ws)
    await ws.disconnect()
    text = "".join(tokens)
    assert done["type"] == "done", done
    assert "Paris" in text, text
    assert "\ufffd" not in text  # real words, not the random model's replacement characters
    assert done["finish_reason"] == "stop", text  # the model ends its answer itself (its <|im_end|>)
