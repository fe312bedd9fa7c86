"""A process of another local user that poses as an engine on its port is never adopted.

Found in review: the supervisor adopted any process whose command line named vLLM's API server and the engine's
port (meant for its own engine, whose record a killed supervisor lost), so another user could have the gateway
send it users' prompts. Now a process found on the port is the engine's only if glmadmin's log writer for that
engine runs in its process group as glmadmin's own user. Real processes, one as `nobody` (CI runs as root).
"""

import os
import subprocess
import sys

import pytest

from glmadmin.lib import processes
from inference import supervisor
from inference.models import Engine
from inference.models import EngineState as S
from tests.support.processes import free_port, open_tmp_dir, wait_for

pytestmark = pytest.mark.privileged  # a process as another user

# Listens on the port named in its own command line, as vLLM's API server would, and, with a log path, starts a
# "log writer" of its own in its process group (a file named logwriter.py, as glmadmin's is).
IMPOSTOR = """
import socket, subprocess, sys, time
port, fake_writer = int(sys.argv[-1]), sys.argv[1]
if fake_writer != "-":
    subprocess.Popen([sys.executable, fake_writer, sys.argv[2], "--", "x"])
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
print("listening", flush=True)
time.sleep(600)
"""


@pytest.fixture
def scripts():
    with open_tmp_dir("glmadmin-impostor-") as where:
        yield where


@pytest.fixture
def engine(transactional_db):
    return Engine.objects.create(name="posed", port=free_port(), model="/m", served_model_name="posed",
                                 enabled=True, state=S.STOPPED)


def impostor(where, engine, user: str, fake_writer: bool) -> subprocess.Popen:
    script = where / "impostor.py"
    script.write_text(IMPOSTOR)
    writer = where / "logwriter.py"
    writer.write_text("import time; time.sleep(600)\n")
    for path in (script, writer):
        path.chmod(0o755)
    python = "/usr/bin/python3" if user != "root" else sys.executable
    argv = [python, str(script), str(writer) if fake_writer else "-", str(supervisor.log_file(engine)),
            supervisor.VLLM_MARKER, "--port", str(engine.port)]
    proc = subprocess.Popen(argv, user=user, start_new_session=True, stdout=subprocess.PIPE, text=True,
                            cwd="/")
    assert proc.stdout.readline().strip() == "listening"
    if fake_writer:
        wait_for(lambda: len(processes.group_members(proc.pid)) == 2, 10, "the impostor's fake log writer")
    return proc


@pytest.mark.parametrize(("user", "fake_writer"), [("root", False), ("nobody", True)],
                         ids=["same-user-without-glmadmins-writer", "other-user-with-a-fake-writer"])
def test_a_process_posing_as_the_engine_on_its_port_is_not_adopted(engine, scripts, user, fake_writer):
    if os.geteuid() != 0:
        pytest.skip("starts a process as nobody: needs root (CI runs as root)")
    supervisor.log_file(engine).parent.mkdir(parents=True, exist_ok=True)
    proc = impostor(scripts, engine, user, fake_writer)
    try:
        supervisor.reconcile(engine.pk)
        engine.refresh_from_db()
        # Not adopted: the engine never points at the impostor (the gateway routes to an engine's pid and port
        # only while it is starting or ready), and the reason names the process in the way.
        assert engine.pid != proc.pid
        assert engine.state not in (S.STARTING, S.READY), engine.state
        assert f"port {engine.port} is in use by pid {proc.pid}" in engine.state_reason
        assert not engine.events.filter(reason__startswith="adopted").exists()
    finally:
        processes.kill_group(proc.pid)
        proc.wait(10)
