"""The demo engine: a tiny random model so a machine without a GPU runs the whole pool."""

import os
import subprocess
from pathlib import Path

from django.conf import settings

from .models import Engine

DEMO_NAME = "demo"
# vLLM's CPU build runs a float32 model as bfloat16 unless told otherwise, and its bfloat16 kernels need
# AVX512-BF16: on a CPU without it (many Xeons in service) the engine's worker dies of SIGILL at its first
# request. The demo model is tiny, so float32 costs nothing; every engine of the demo model runs with these.
ENGINE_ARGS = ["--dtype", "float32"]
SCRIPT = Path(__file__).resolve().parent / "runtime" / "make_demo_model.py"


def has_nvidia_gpu() -> bool:
    return os.path.exists("/dev/nvidiactl")


def model_dir() -> Path:
    return settings.DATA_DIR / "models" / "glmadmin-demo"


def make_model(out: Path | None = None, *, endless: bool = False) -> Path:
    """Generate the demo model with the engine runtime (it has torch and transformers). endless: without an
    end-of-sequence token, every answer runs to its max_tokens (for tests that stop long answers)."""
    out = out or model_dir()
    if not Path(settings.ENGINE_PYTHON).exists():
        raise FileNotFoundError(f"the engine runtime is not installed ({settings.ENGINE_PYTHON}); "
                                "scripts/run installs it")
    subprocess.run([settings.ENGINE_PYTHON, str(SCRIPT), str(out), *(["--endless"] if endless else [])],
                   check=True, capture_output=True, text=True, timeout=600)
    return out


def ensure_demo_engine() -> Engine | None:
    """On a machine without GPUs and without engines, define the demo engine (once)."""
    if has_nvidia_gpu() or Engine.objects.exists():
        return None
    path = model_dir()
    if not (path / "config.json").exists():
        make_model(path)
    return Engine.objects.create(
        name=DEMO_NAME, port=8101, model=str(path), served_model_name="glmadmin-demo", enforce_eager=True,
        shutdown_timeout=10, max_model_len=4096, extra_args=ENGINE_ARGS,
    )
