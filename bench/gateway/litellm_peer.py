"""The LiteLLM proxy as a peer of glmadmin's gateway in bench/gateway/run.py.

LiteLLM is the field's most-used OpenAI-compatible gateway. It is not one of glmadmin's dependencies: the
bench installs one pinned version into its own scratch virtualenv (bench/.litellm-venv, ignored by git),
once, and runs it in front of the same upstream as glmadmin's gateway, configured for speed as LiteLLM's
production notes say (docs.litellm.ai/docs/proxy/prod, /docs/proxy/cli): no database (so no spend logs,
no error logs written anywhere), no callbacks, logging at ERROR, the model cost map read locally
instead of fetched at start, one worker process (the same as glmadmin's one uvicorn process), and a
master key checked on every request (as glmadmin checks its API key). Its uvicorn runs on uvloop (LiteLLM
asks for it) and on httptools, installed beside it at glmadmin's version: without it uvicorn falls back to
h11 (pure Python), and the comparison would be of HTTP parsers, not of gateways.

    .venv/bin/python bench/gateway/litellm_peer.py      # install (or check) the pinned LiteLLM only
"""

import importlib.metadata
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("GLMADMIN_BENCH_LITELLM_VENV", ROOT / "bench" / ".litellm-venv"))
# The newest that installed on the build machine (Python 3.11, 2026-11); the proxy extra brings its server.
VERSION = "1.108.7"
MASTER_KEY = "sk-bench-litellm"


def _wanted() -> dict[str, str]:
    return {"litellm": VERSION, "httptools": importlib.metadata.version("httptools")}


def _installed() -> dict[str, str] | None:
    python = VENV / "bin" / "python"
    if not python.exists():
        return None
    found = subprocess.run([python, "-c", "import importlib.metadata as m, sys; "
                            "print(*(m.version(name) for name in sys.argv[1:]))", *_wanted()],
                           capture_output=True, text=True)
    return dict(zip(_wanted(), found.stdout.split(), strict=True)) if found.returncode == 0 else None


def ensure() -> Path:
    """The litellm command of the scratch virtualenv, installing the pinned versions first where needed."""
    if _installed() != _wanted():
        print(f"installing LiteLLM {VERSION} into {VENV} (once; a few minutes)", flush=True)
        if not (VENV / "bin" / "python").exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([VENV / "bin" / "pip", "install", "--quiet", f"litellm[proxy]=={VERSION}",
                        f"httptools=={_wanted()['httptools']}"], check=True)
    return VENV / "bin" / "litellm"


def config(upstream_port: int, model: str) -> str:
    """The proxy's config.yaml: one model, an OpenAI-compatible upstream (the openai/ provider, as LiteLLM's
    docs say for vLLM's server and any OpenAI-compatible endpoint)."""
    return f"""model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{model}
      api_base: http://127.0.0.1:{upstream_port}/v1
      api_key: none
litellm_settings:
  set_verbose: false
  request_timeout: 600
  callbacks: []
  success_callback: []
  failure_callback: []
general_settings:
  master_key: {MASTER_KEY}
  disable_spend_logs: true
  disable_error_logs: true
"""


def start(upstream_port: int, port: int, model: str) -> tuple[subprocess.Popen, dict]:
    """The proxy listening on port (one worker), and the headers a client sends it. Raises on no start."""
    litellm = ensure()
    workdir = Path(tempfile.mkdtemp(prefix="litellm-bench-"))
    (workdir / "config.yaml").write_text(config(upstream_port, model))
    env = {name: value for name, value in os.environ.items()
           if name not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    env.update(LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True", LITELLM_MODE="PRODUCTION",
               NO_DOCS="True", DISABLE_ADMIN_UI="True")
    proc = subprocess.Popen([litellm, "--config", str(workdir / "config.yaml"), "--host", "127.0.0.1",
                             "--port", str(port), "--num_workers", "1"], cwd=workdir, env=env,
                            stdout=open(workdir / "proxy.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300  # its import alone takes tens of seconds on a loaded 2-core machine
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"LiteLLM exited ({proc.returncode}); see {workdir / 'proxy.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=1).status_code == 200:
                return proc, {"Authorization": f"Bearer {MASTER_KEY}"}
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit(f"LiteLLM did not start within 300 s; see {workdir / 'proxy.log'}")


if __name__ == "__main__":
    print(ensure(), _installed())
