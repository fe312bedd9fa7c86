"""vLLM options: what the admin accepts, and the command line an engine runs.

The command is a list of arguments handed to exec, never a shell string, so
nothing typed in the admin can become a shell command.
"""

import re

from django.core.exceptions import ValidationError

KV_CACHE_DTYPES = ["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"]
QUANTIZATIONS = ["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "bitsandbytes", "compressed-tensors", "gguf",
                 "experts_int8"]
# Set from the engine's own fields; giving them again as extra args would contradict those.
MANAGED_FLAGS = {"--model", "--port", "--host", "--served-model-name", "--tensor-parallel-size", "--max-model-len",
                 "--block-size", "--max-num-seqs", "--kv-cache-dtype", "--enable-chunked-prefill",
                 "--gpu-memory-utilization", "--quantization", "--enforce-eager", "--shutdown-timeout"}
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def validate_extra_args(value):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError('Give a JSON list of strings, e.g. ["--seed", "1"].')
    for item in value:
        if "\0" in item or "\n" in item:
            raise ValidationError(f"Argument {item!r} contains a control character.")
        flag = item.split("=", 1)[0]
        if flag in MANAGED_FLAGS:
            raise ValidationError(f"{flag} is set by its own field above; remove it from the extra arguments.")


def validate_env(value):
    if not isinstance(value, dict):
        raise ValidationError('Give a JSON object of names to values, e.g. {"VLLM_LOGGING_LEVEL": "INFO"}.')
    for name, item in value.items():
        if not _ENV_NAME.match(name):
            raise ValidationError(f"{name!r} is not a valid environment variable name.")
        if not isinstance(item, str):
            raise ValidationError(f"The value of {name} must be a string.")


def command(engine, python: str) -> list[str]:
    """The argv that starts `engine` with the engine runtime's `python`."""
    argv = [python, "-m", "vllm.entrypoints.openai.api_server",
            "--model", engine.model, "--served-model-name", engine.served_model_name,
            "--host", engine.listen_address, "--port", str(engine.port),
            "--max-model-len", str(engine.max_model_len),
            "--shutdown-timeout", str(engine.shutdown_timeout)]
    if engine.tensor_parallel_size > 1:
        argv += ["--tensor-parallel-size", str(engine.tensor_parallel_size)]
    optional = {
        "--block-size": engine.block_size,
        "--max-num-seqs": engine.max_num_seqs,
        "--gpu-memory-utilization": engine.gpu_memory_utilization,
        "--quantization": engine.quantization or None,
        "--kv-cache-dtype": None if engine.kv_cache_dtype == "auto" else engine.kv_cache_dtype,
    }
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, str(value)]
    if engine.enable_chunked_prefill is not None:
        argv.append("--enable-chunked-prefill" if engine.enable_chunked_prefill else "--no-enable-chunked-prefill")
    if engine.enforce_eager:
        argv.append("--enforce-eager")
    return argv + list(engine.extra_args)


def environment(engine, base: dict) -> dict:
    env = dict(base)
    if engine.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in engine.gpus)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.update(engine.env)
    return env
