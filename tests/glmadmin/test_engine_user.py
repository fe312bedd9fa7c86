"""GLMADMIN_ENGINE_USER: a process started to run as another user runs as it (no supplementary groups), while
its log writer stays glmadmin's and its group can still be signalled; the setting is refused, in one line, where
it cannot work. A real vLLM engine as nobody: tests/inference/engines/test_supervision_real_engine.py."""

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from glmadmin.lib import processes, runas
from tests.support.processes import ROOT, open_tmp_dir, python_for, wait_for

pytestmark = pytest.mark.privileged  # starts processes as another user: needs root, as CI runs
NOBODY = pwd.getpwnam("nobody")


def spawn_as_nobody(argv: list[str], tmp_path: Path):
    log = tmp_path / "engine" / "engine.log"
    (tmp_path / "policies.json").write_text("[]")
    proc = processes.spawn(argv, {"PATH": "/usr/bin:/bin"}, log, cwd=tmp_path, log_config=tmp_path / "policies.json",
                           run_as=(NOBODY.pw_uid, NOBODY.pw_gid))
    return proc, log


def test_the_command_runs_as_the_user_and_its_log_is_written_by_glmadmins_writer(tmp_path):
    tmp_path.chmod(0o700)  # the log's directory: closed to the command's user
    proc, log = spawn_as_nobody(["grep", "-E", "^(Uid|Gid|Groups):", "/proc/self/status"], tmp_path)
    wait_for(lambda: not processes.group_alive(proc.pid), 60, "the command and its writer to end")
    ids = dict(line.split(":", 1) for line in log.read_text().splitlines())
    assert ids["Uid"].split() == [str(NOBODY.pw_uid)] * 4 and ids["Gid"].split() == [str(NOBODY.pw_gid)] * 4
    assert ids["Groups"].split() == []  # none of root's supplementary groups
    assert log.stat().st_uid == os.geteuid()


def test_signals_reach_a_group_that_runs_as_another_user(tmp_path):
    proc, _ = spawn_as_nobody(["sleep", "600"], tmp_path)
    wait_for(lambda: proc.uids().real == NOBODY.pw_uid, 30, "the command to run as nobody")  # after its exec
    processes.terminate(proc.pid)
    wait_for(lambda: not processes.group_alive(proc.pid), 30, "the group to end on SIGTERM")


def test_an_engine_user_is_refused_in_one_line_where_glmadmin_is_not_root(open_tmp):
    python = python_for(runas.lookup("nobody"), Path(sys.executable), open_tmp)  # glmadmin's, as nobody
    env = {**os.environ, "GLMADMIN_ENGINE_USER": "nobody", "GLMADMIN_SECRET_KEY": "x" * 50,
           "GLMADMIN_DATA_DIR": str(open_tmp / "data")}
    checked = subprocess.run([str(python), "manage.py", "check"], cwd=ROOT, env=env, capture_output=True,
                             text=True, timeout=120, user=NOBODY.pw_uid, group=NOBODY.pw_gid, extra_groups=[])
    assert checked.returncode != 0
    assert checked.stderr.splitlines() == [
        "ImproperlyConfigured: GLMADMIN_ENGINE_USER=nobody: glmadmin runs as nobody (uid 65534), but only root can "
        "start engines as another user; run glmadmin as root or unset GLMADMIN_ENGINE_USER"]


def test_what_else_is_refused(tmp_path):
    data, homes = tmp_path / "data", tmp_path / "homes"
    runtime = Path("/bin/sh")  # one nobody can run
    assert runas.problem("nobody", data, homes, runtime) is None  # as root (CI runs as root)
    assert runas.problem("no-such-user", data, homes, runtime) == (
        "GLMADMIN_ENGINE_USER=no-such-user: there is no such user on this machine")
    assert runas.problem("root", data, homes, runtime).startswith(
        "GLMADMIN_ENGINE_USER=root: the engine user must not be root")
    assert runas.problem("nobody", data, data / "homes", runtime).startswith(
        f"GLMADMIN_ENGINE_HOME_DIR={data / 'homes'} is inside the data directory")


def test_the_data_directory_is_closed_and_the_home_is_the_users(tmp_path):
    data = tmp_path / "data"
    data.mkdir(mode=0o755)
    runas.keep_private(data)
    assert data.stat().st_mode & 0o777 == 0o700
    home = runas.home(tmp_path / "homes" / "demo", runas.lookup("nobody"))
    assert (home.stat().st_uid, home.stat().st_mode & 0o777) == (NOBODY.pw_uid, 0o700)
    assert (tmp_path / "homes").stat().st_mode & 0o777 == 0o755


@pytest.fixture
def open_tmp():
    with open_tmp_dir("glmadmin-engine-user-") as where:
        yield where


def test_a_runtime_under_a_closed_directory_is_refused(open_tmp):
    nobody, tmp_path = runas.lookup("nobody"), open_tmp
    (tmp_path / "closed" / "bin").mkdir(parents=True)
    (tmp_path / "open").mkdir(mode=0o755)
    tmp_path.chmod(0o755)
    (tmp_path / "closed").chmod(0o700)
    python = tmp_path / "closed" / "bin" / "python"
    python.write_text("")
    python.chmod(0o755)
    (tmp_path / "open" / "python").symlink_to(python)  # an open path to it does not help: the target counts
    assert runas.closed_to(nobody, tmp_path / "open" / "python") == tmp_path / "closed"
    (tmp_path / "closed").chmod(0o711)  # enterable, not listable: enough to run what is in it
    assert runas.closed_to(nobody, tmp_path / "open" / "python") is None
    python.chmod(0o700)
    assert runas.closed_to(nobody, tmp_path / "open" / "python") == python
    assert runas.problem("nobody", tmp_path / "data", tmp_path / "homes", python).startswith(
        f"GLMADMIN_ENGINE_USER=nobody cannot run the engine runtime {python}: {python} is closed to it (mode 700)")


def test_a_model_file_closed_to_the_user_is_named(open_tmp):
    nobody = runas.lookup("nobody")
    (open_tmp / "config.json").write_text("{}")
    (open_tmp / "model.safetensors").write_text("")
    (open_tmp / "model.safetensors").chmod(0o600)  # as transformers saves the weights
    assert runas.unreadable(nobody, open_tmp) == open_tmp / "model.safetensors"
    (open_tmp / "model.safetensors").chmod(0o644)
    assert runas.unreadable(nobody, open_tmp) is None
