"""glmadmin's replay of vLLM's argument parsing stays vLLM's: the table is the installed vLLM's parser, and on
tricky command lines the replay finds the same arguments as vLLM's own parser (run in the engine runtime)."""

import pytest
from django.conf import settings

from inference import options, vllm_parser
from inference.models import Engine
from tests.support.engines import require_runtime

TRICKY = [
    ["-tp", "2"], ["--max_model_len", "8k"], ["--max-model", "1024"], ["--port=9000"], ["-qawq"],
    ["--trust-remote"], ["--trust_remote_code"], ["--no-trust-remote-code"], ["-ep"], ["-dph"],
    ["--seed", "7", "/models/other"],
    ["--kv-transfer-config.kv_connector", "x", "--kv_transfer_config.kv_role", "kv_both", "--seed=7"],
    ["-cc.mode=0"], ["--compilation-config.mode", "0", "--compilation_config.cudagraph_mode", "NONE"],
    ["-O3"], ["-O", "2"], ["-O=1"], ["--middleware", "a.B", "--middleware", "c.D"], ["--api-key", "a", "b"],
    ["--hf-token"], ["--device-memory-utilization", "0.5"], ["--", "/models/other"],
    # What vLLM refuses, glmadmin refuses.
    ["--sed", "1"], ["--max", "1"], ["--seed"], ["--enforce-eager=1"], ["-tp4"],
]


def dests(argv):
    try:
        return {"dests": sorted({use.dest for use in vllm_parser.parse(argv)})}
    except vllm_parser.ArgumentsError:
        return "error"


def test_table_is_the_installed_vllms():
    require_runtime()
    assert vllm_parser.from_runtime(settings.ENGINE_PYTHON) == vllm_parser.table(), (
        "vLLM's arguments changed: run manage.py vllm_parser --write and review the diff")


def test_replay_finds_what_vllm_finds():
    require_runtime()
    theirs = vllm_parser.from_runtime(settings.ENGINE_PYTHON, *TRICKY)
    for argv, their in zip(TRICKY, theirs, strict=True):
        assert dests(argv) == ("error" if "error" in their else their), argv


def test_every_argument_glmadmin_names_exists():
    known = {argument["dest"] for argument in vllm_parser.table()["arguments"]}
    for names in (options.MANAGED, options.REFUSED, options.STAFF_ARGUMENTS):
        assert set(names) <= known, set(names) - known


def test_every_flag_glmadmin_sets_is_managed():
    engine = Engine(name="e", port=8001, model="/m", served_model_name="m", gpu_ids="0,1", tensor_parallel_size=2,
                    block_size=16, max_num_seqs=4, kv_cache_dtype="fp8", enable_chunked_prefill=True,
                    gpu_memory_utilization=0.5, quantization="awq", enforce_eager=True)
    argv = options.command(engine, "python")[3:]
    assert {use.dest for use in vllm_parser.parse(argv)} <= set(options.MANAGED)


@pytest.mark.parametrize("dest", sorted(options.STAFF_ARGUMENTS))
def test_no_staff_argument_is_managed_or_refused(dest):
    assert dest not in options.MANAGED and dest not in options.REFUSED
