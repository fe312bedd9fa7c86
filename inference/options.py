"""vLLM options: what the admin accepts, and the command line an engine runs.

The command is a list of arguments handed to exec, never a shell string, so
nothing typed in the admin can become a shell command.
"""

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError

from . import vllm_parser

KV_CACHE_DTYPES = ["auto", "fp8", "fp8_e4m3", "fp8_e5m2", "bfloat16"]
QUANTIZATIONS = ["awq", "awq_marlin", "gptq", "gptq_marlin", "fp8", "bitsandbytes", "compressed-tensors", "gguf",
                 "experts_int8"]
# Arguments (argparse dests) glmadmin sets from the engine's own fields: never in the extra arguments, whatever the
# spelling (-tp, --max_model_len, --port=9, an abbreviation, a bare value that vLLM takes as the model).
MANAGED = {"model_tag": "Model", "model": "Model", "served_model_name": "Served model name",
           "host": "Listen address", "port": "Port", "device_ids": "GPU ids", "tensor_parallel_size":
           "Tensor parallel size", "max_model_len": "Max model len", "block_size": "Block size",
           "max_num_seqs": "Max num seqs", "kv_cache_dtype": "Kv cache dtype",
           "enable_chunked_prefill": "Enable chunked prefill", "gpu_memory_utilization": "Gpu memory utilization",
           "quantization": "Quantization", "enforce_eager": "Enforce eager", "shutdown_timeout": "Shutdown timeout",
           # What the engine may fetch media from: the gateway checks requests against the same list (media.py).
           "allowed_media_domains": "Allowed media domains"}
# Arguments no engine of glmadmin's may have: supervision needs an HTTP server on the port, started as asked.
REFUSED = {"help": "prints the help and exits: the engine would never start",
           "config": "reads more arguments from a file glmadmin cannot check: give them here",
           "headless": "runs no API server: glmadmin could not probe or route to the engine",
           "grpc": "serves gRPC instead of HTTP on the port: glmadmin could not probe or route to the engine",
           "uds": "listens on a Unix socket instead of the port: glmadmin could not probe or route to the engine"}
# The vLLM options staff may set (tuning: batching, caching, numerics, logging). Every other argument can run
# code (plugins, middleware, remote code, worker classes, logging configs), read files or reach the network
# (paths, hub ids, URLs, endpoints): it needs a superuser. An allowlist, so a new vLLM option is a superuser's
# until someone looks at it.
STAFF_ARGUMENTS = {
    "seed", "dtype", "max_logprobs", "logprobs_mode", "disable_sliding_window", "disable_cascade_attn",
    "enable_prefix_caching", "prefix_caching_hash_algo", "num_gpu_blocks_override", "kv_cache_memory_bytes",
    "cpu_offload_gb", "max_num_batched_tokens", "max_num_scheduled_tokens", "max_num_active_seqs",
    "max_num_queued_reqs", "max_num_queued_tokens", "long_prefill_token_threshold", "scheduling_policy",
    "async_scheduling", "stream_interval", "watermark", "cudagraph_capture_sizes", "max_cudagraph_capture_size",
    "optimization_level", "performance_mode", "enable_expert_parallel", "disable_custom_all_reduce",
    "max_parallel_loading_workers", "disable_log_stats", "log_level", "uvicorn_log_level",
    "disable_uvicorn_access_log", "max_log_len", "enable_prompt_tokens_details", "enable_server_load_tracking",
    "enable_force_include_usage", "sse_keep_alive_interval", "enable_auto_tool_choice", "tool_call_parser",
    "reasoning_parser", "limit_mm_per_prompt", "mm_processor_cache_gb", "language_model_only", "skip_mm_profiling",
}


def validate_extra_args(value):
    """What every engine's extra arguments must be, whoever sets them (model validation)."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError('Give a JSON list of strings, e.g. ["--seed", "1"].')
    for item in value:
        if "\0" in item or "\n" in item:
            raise ValidationError(f"Argument {item!r} contains a control character.")
    try:
        uses = vllm_parser.parse(value)
    except vllm_parser.ArgumentsError as exc:
        raise ValidationError(f"vLLM would refuse these arguments: {exc}") from None
    problems = [_managed_or_refused(use) for use in uses]
    if any(problems):
        raise ValidationError([p for p in problems if p])


def _managed_or_refused(use) -> str | None:
    if use.dest == "model_tag":
        return f"{use.values[0]!r} is not a flag: vLLM would take it as the model, which is set by its own field."
    if use.dest in MANAGED:
        return f"{_shown(use)} is set by its own field ({MANAGED[use.dest]}); remove it from the extra arguments."
    if use.dest in REFUSED:
        return f"{_shown(use)} {REFUSED[use.dest]}."
    return None


def _shown(use) -> str:
    canonical = vllm_parser.canonical_flag(use.dest)
    return use.flag if use.flag == canonical else f"{use.flag} (that is {canonical})"


def superuser_arguments_added(old: list, new: list) -> list[str]:
    """The flags in `new` that need a superuser and were not in `old` just so (same flag, same values).

    Staff may keep what a superuser set, remove it, and add tuning flags; anything else is named here.
    Arguments vLLM would refuse are left to validate_extra_args.
    """
    try:
        wanted = [use for use in vllm_parser.parse(new) if use.dest not in STAFF_ARGUMENTS]
    except (vllm_parser.ArgumentsError, TypeError, AttributeError):
        return []
    try:
        had = [use for use in vllm_parser.parse(old) if use.dest not in STAFF_ARGUMENTS]
    except (vllm_parser.ArgumentsError, TypeError, AttributeError):
        had = []
    added = []
    for use in wanted:
        if use in had:
            had.remove(use)
        elif use.dest not in MANAGED and use.dest not in REFUSED:
            added.append(_shown(use))
    return added


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The variables an engine may be given: vLLM's own and those of the libraries it runs on.
ENV_ALLOWED = ("VLLM_*", "NCCL_*", "CUDA_*", "OMP_*", "KMP_*", "MKL_*", "OPENBLAS_*", "TORCH_*", "TORCHINDUCTOR_*",
               "PYTORCH_*", "TRITON_*", "HF_*", "TRANSFORMERS_OFFLINE", "TOKENIZERS_PARALLELISM")
# Refused, and named with why, although some match the patterns above: they load code, point the engine at
# files or other hosts, or override what glmadmin sets.
ENV_REFUSED = [
    ("LD_*", "loads libraries into every process of the engine"),
    ("PYTHON*", "changes what Python imports and runs"),
    ("PATH", "chooses the programs the engine runs"),
    ("BROWSER", "names a program that Python runs to open a URL"),
    ("PERL*", "runs code in any Perl the engine starts"),
    ("*_PROXY", "sends the engine's connections through another host"),
    ("VLLM_PLUGINS", "loads vLLM plugins, which are code"),
    ("*_PLUGIN*", "loads a plugin, which is code"),
    ("*_PATH", "points the engine at a file or library to load"),
    ("VLLM_ALLOW_INSECURE_SERIALIZATION", "lets the engine unpickle data, which can run code"),
    ("VLLM_ALLOW_RUNTIME_LORA_UPDATING", "lets API callers load adapters from any path"),
    ("VLLM_LORA_RESOLVER_*", "loads adapters from other places"),
    ("VLLM_RAY_EXTRA_ENV_*", "copies more of the environment to the workers"),
    ("VLLM_USE_MODELSCOPE", "downloads models from ModelScope"),
    ("VLLM_USAGE_STATS_SERVER", "sends usage reports to another server"),
    ("HF_ENDPOINT", "points the engine at another model hub"),
    ("CUDA_VISIBLE_DEVICES", "is set from the GPU ids field"),
]
# Engines never download: a model is what an operator put on the disk.
OFFLINE = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE")


def validate_env(value):
    if not isinstance(value, dict):
        raise ValidationError('Give a JSON object of names to values, e.g. {"VLLM_LOGGING_LEVEL": "INFO"}.')
    problems = [env_problem(name, item) for name, item in value.items()]
    if any(problems):
        raise ValidationError([p for p in problems if p])


def env_problem(name: str, value) -> str | None:
    """Why an engine may not have this variable, or None."""
    if not _ENV_NAME.match(name):
        return f"{name!r} is not a valid environment variable name."
    if not isinstance(value, str):
        return f"The value of {name} must be a string."
    # Upper-cased: many programs read https_proxy as well as HTTPS_PROXY.
    refused = next((why for pattern, why in ENV_REFUSED if fnmatch.fnmatchcase(name.upper(), pattern)), None)
    if refused:
        return f"{name} is refused: it {refused}."
    if not any(fnmatch.fnmatchcase(name, pattern) for pattern in ENV_ALLOWED):
        return f"{name} is not an engine setting glmadmin passes on (allowed: {', '.join(ENV_ALLOWED)})."
    if name in OFFLINE and value != "1":
        return f"{name} must be 1: engines stay offline and load only models already on the disk."
    return None


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
    if engine.soft_restart and sleep_mode_available():
        argv.append(SLEEP_MODE_FLAG)
    argv += [MEDIA_DOMAINS_FLAG, *media_domains(engine)]
    return argv + list(engine.extra_args)


MEDIA_DOMAINS_FLAG = "--allowed-media-domains"
MEDIA_NO_HOST = "invalid"  # reserved: never resolves (RFC 6761), so vLLM can fetch nothing
MAX_MEDIA_DOMAINS = 100
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def validate_media_domains(value) -> None:
    """An engine's allowed media domains (model validation): exact host names as vLLM compares them."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValidationError('Give a JSON list of host names, e.g. ["images.example.com"]; [] fetches no URL.')
    if len(value) > MAX_MEDIA_DOMAINS:
        raise ValidationError(f"At most {MAX_MEDIA_DOMAINS} domains.")
    problems = [_domain_problem(item) for item in value]
    if any(problems):
        raise ValidationError([p for p in problems if p])


def _domain_problem(item: str) -> str | None:
    if item != item.lower():
        return f"{item!r}: write host names in lower case (as vLLM compares them)."
    if item == MEDIA_NO_HOST:
        return f"{item!r} is the host glmadmin gives an engine that may fetch nothing: leave the list empty."
    if "*" in item:
        return f"{item!r}: no wildcards; vLLM compares exact host names, so list each host (a.example.com)."
    if "/" in item or ":" in item:
        return f"{item!r}: a host name only, without scheme, port or path (images.example.com)."
    if not _HOST_NAME.match(item):
        return f"{item!r} is not a host name."
    return None


def media_domains(engine) -> list[str]:
    """The hosts the engine may fetch media URLs from. vLLM fetches from any host when the flag is absent or
    empty, so every engine gets it: a multimodal engine its list, any other (and an empty list) a host that never
    resolves (RFC 6761), so that vLLM refuses every URL even to a client that reaches the engine directly."""
    return (engine.multimodal and list(engine.allowed_media_domains)) or [MEDIA_NO_HOST]


SLEEP_MODE_FLAG = "--enable-sleep-mode"


def sleep_mode_available() -> bool:
    """Whether this host's engine runtime has vLLM's sleep mode: only the CUDA build has it, and the CPU build
    refuses to start with the flag (GLMADMIN_ENGINE_SLEEP_MODE: auto, on or off)."""
    if settings.ENGINE_SLEEP_MODE in ("on", "off"):
        return settings.ENGINE_SLEEP_MODE == "on"
    return os.path.exists("/dev/nvidiactl")


# What any process needs of the worker's environment (a home for caches, a locale, a time zone, a temp dir),
# and where the operator's system keeps the CUDA driver's libraries: NVIDIA's container images find
# libcuda through LD_LIBRARY_PATH. That one is the worker's own (the operator's), never an engine row's.
BASIC_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR", "XDG_CACHE_HOME",
             "DO_NOT_TRACK", "LD_LIBRARY_PATH")
_CREDENTIAL = re.compile(r"SECRET|PASSW|TOKEN|KEY|CREDENTIAL", re.IGNORECASE)


def base_environment(worker: Mapping[str, str]) -> dict:
    """What an engine gets of the worker's environment: the basics, the worker's settings for vLLM and the
    libraries under it (VLLM_*, CUDA_*, HF_*... as an engine's own may be, no credentials), the names
    GLMADMIN_ENGINE_ENV_PASSTHROUGH adds, and a PATH to the engine runtime. Never the rest: the database and
    Redis URLs, the mail password, the secret key stay with glmadmin, whatever code a model brings."""
    env = {name: worker[name] for name in (*BASIC_ENV, *settings.ENGINE_ENV_PASSTHROUGH) if name in worker}
    env.update({name: value for name, value in worker.items()
                if env_problem(name, value) is None and not _CREDENTIAL.search(name)})
    env["PATH"] = os.pathsep.join([str(Path(settings.ENGINE_PYTHON).parent), "/usr/local/bin", "/usr/bin", "/bin"])
    env.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")  # GiB of KV cache for the CPU build; without it vLLM takes 4
    return env


def environment(engine, base: dict) -> dict:
    """The engine's environment: `base`, its GPUs, its own variables, and offline whatever they say."""
    env = dict(base)
    # Checked again here: a row saved before a variable was refused must not pass it on.
    env.update({name: value for name, value in engine.env.items() if env_problem(name, value) is None})
    if engine.gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(str(g) for g in engine.gpus)
    if engine.soft_restart and sleep_mode_available():
        env["VLLM_SERVER_DEV_MODE"] = "1"  # serves /sleep and /wake_up (on the engine's own address only)
    env["HF_HUB_OFFLINE"] = "1"
    # A media URL on an allowed host must not redirect the fetch to another (vLLM's docs ask for this beside
    # --allowed-media-domains); set last, so an engine's own variables cannot turn it back on.
    env["VLLM_MEDIA_URL_ALLOW_REDIRECTS"] = "0"
    return env
