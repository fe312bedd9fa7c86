import stat

import pytest
from django.core.exceptions import ImproperlyConfigured

from glmadmin.env import env_bool, env_float, env_int, env_secret, persistent_secret


def test_env_int_names_the_variable(monkeypatch):
    monkeypatch.setenv("GLMADMIN_X", "ten")
    with pytest.raises(ImproperlyConfigured, match="GLMADMIN_X must be an integer"):
        env_int("GLMADMIN_X", 1)
    monkeypatch.setenv("GLMADMIN_X", "0")
    with pytest.raises(ImproperlyConfigured, match="GLMADMIN_X must be at least 1"):
        env_int("GLMADMIN_X", 1, minimum=1)
    monkeypatch.setenv("GLMADMIN_X", "42")
    assert env_int("GLMADMIN_X", 1) == 42


def test_env_float_names_the_variable(monkeypatch):
    monkeypatch.setenv("GLMADMIN_X", "fast")
    with pytest.raises(ImproperlyConfigured, match="GLMADMIN_X must be a number"):
        env_float("GLMADMIN_X", 1.0)
    for bad in ("-0.5", "nan"):
        monkeypatch.setenv("GLMADMIN_X", bad)
        with pytest.raises(ImproperlyConfigured, match="GLMADMIN_X must be at least 0"):
            env_float("GLMADMIN_X", 1.0, minimum=0)
    monkeypatch.setenv("GLMADMIN_X", "0.5")
    assert env_float("GLMADMIN_X", 1.0, minimum=0) == 0.5


def test_env_bool(monkeypatch):
    assert env_bool("GLMADMIN_UNSET_FLAG", True) is True
    monkeypatch.setenv("GLMADMIN_FLAG", "Yes")
    assert env_bool("GLMADMIN_FLAG") is True
    monkeypatch.setenv("GLMADMIN_FLAG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="GLMADMIN_FLAG must be a boolean"):
        env_bool("GLMADMIN_FLAG")


def test_env_secret_reads_file(monkeypatch, tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    monkeypatch.setenv("GLMADMIN_PW_FILE", str(tmp_path / "pw"))
    assert env_secret("GLMADMIN_PW") == "s3cret"
    monkeypatch.setenv("GLMADMIN_PW_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="GLMADMIN_PW_FILE cannot be read"):
        env_secret("GLMADMIN_PW")


def test_persistent_secret_is_generated_once_and_private(tmp_path):
    path = tmp_path / "sub" / "secret_key"
    first = persistent_secret(path)
    assert len(first) >= 50
    assert persistent_secret(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind
