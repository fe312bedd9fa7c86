#!/usr/bin/env bash
# The real-GPU check (see README.md beside this file), run on the lent GPU machine from the repo root:
# one CUDA vLLM engine under glmadmin's own supervisor (start_engine), gpu_status, one telemetry cycle
# through the sampler, a foreign process holding GPU memory and the rule that flags it, the NVML cycle
# benchmark, stop_engine. Needs /tmp/parts (vLLM wheels) and /tmp/glm (glmadmin's wheels + redis-server)
# from the earlier calls. Output goes to $OUT.
set -u
OUT=${OUT:-/tmp/glm-out}; mkdir -p "$OUT"
T_ALL=$(date +%s.%N)
el() { python3 -c "import time; print(f'{time.time()-$1:.1f}')"; }
mkdir -p /tmp/parts; cp .gpu/p*/wheels.tar.* /tmp/parts/ 2>/dev/null
cat /tmp/parts/wheels.tar.part-* > /tmp/wheels.tar
want=$(cat /tmp/parts/wheels.tar.sha256); got=$(sha256sum /tmp/wheels.tar | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "SHA MISMATCH (machine went cold?)"; exit 3; }
rm -rf /tmp/wheels && tar -xf /tmp/wheels.tar -C /tmp && rm -f /tmp/wheels.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/wheels/*.whl || exit 4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/glmsite /tmp/glm/wheels/*.whl || exit 4
export PYTHONPATH=$PWD:/tmp/glmsite:/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 \
  DO_NOT_TRACK=1 PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 DJANGO_SETTINGS_MODULE=glmadmin.settings \
  GLMADMIN_DATA_DIR=/tmp/glmdata REDIS_URL=redis://127.0.0.1:6390/0 GLMADMIN_ENGINE_PYTHON=$(command -v python3) \
  GLMADMIN_ENGINE_ENV_PASSTHROUGH=PYTHONPATH  # engines start from a scrubbed environment: the wheels are on PYTHONPATH
mkdir -p /tmp/glmdata
LD_LIBRARY_PATH=/tmp/glm/redis /tmp/glm/redis/redis-server --port 6390 --bind 127.0.0.1 --save "" \
  --appendonly no --daemonize yes --dir /tmp/glmdata || exit 5
python3 manage.py migrate -v0 || exit 6
python3 .gpu/p5/make_tiny_model.py /tmp/tiny 2>&1 | tail -1
echo "== nvidia-smi"; nvidia-smi --query-gpu=name,driver_version,memory.used,memory.total --format=csv
echo "== manage.py gpu_status (nothing started yet)"; python3 manage.py gpu_status; echo "rc=$?"
python3 manage.py shell -v 0 -c "
from inference.models import Engine
Engine.objects.create(name='gpu0', port=8000, model='/tmp/tiny', served_model_name='tiny', gpu_ids='0',
    max_model_len=2048, enforce_eager=True, gpu_memory_utilization=0.2, enabled=False)"
python3 -m celery -A glmadmin worker --loglevel WARNING --concurrency 2 -Q celery,engines.local > "$OUT/worker.log" 2>&1 &
python3 -m celery -A glmadmin beat --loglevel WARNING > "$OUT/beat.log" 2>&1 &
echo "== manage.py start_engine gpu0"; T=$(date +%s.%N)
python3 manage.py start_engine gpu0 --timeout 300; echo "rc=$? after $(el $T) s"
echo "== foreign process: another python holding a 3 GiB torch tensor"
setsid python3 -c "
import torch, time
x = torch.empty(3 * 2**30, dtype=torch.uint8, device='cuda'); x.fill_(1); torch.cuda.synchronize()
open('/tmp/foreign.ready', 'w').write('1'); time.sleep(900)" > "$OUT/foreign.log" 2>&1 &
for i in $(seq 1 120); do [ -e /tmp/foreign.ready ] && break; sleep 0.5; done
echo "== manage.py gpu_status (engine + foreign)"; python3 manage.py gpu_status; echo "rc=$?"
echo "== one telemetry cycle through glmadmin (monitoring.telemetry.service.sample)"
curl -s http://127.0.0.1:8000/v1/completions -H 'Content-Type: application/json' \
  -d '{"model":"tiny","prompt":"hello","max_tokens":32}' > /dev/null
python3 scripts/gpu_check/cycle.py
echo "== waiting for the foreign-process rule (beat samples every 10 s; rule holds 30 s)"
for i in $(seq 1 30); do
  n=$(python3 manage.py shell -v 0 -c "from monitoring.models import Incident; print(Incident.objects.open().filter(kind='gpu').count())" 2>/dev/null)
  [ "${n:-0}" -gt 0 ] && break; sleep 3
done
python3 manage.py shell -v 0 -c "
from monitoring.models import Incident
for i in Incident.objects.all().order_by('opened_at'): print(i.level, i.kind, i.source, '|', i.title, '|', i.message)"
echo "== bench/telemetry --nvml-cycle"; python3 bench/telemetry/run.py --nvml-cycle --cycles 200 2>&1 | tail -20
echo "== manage.py stop_engine gpu0"; T=$(date +%s.%N)
python3 manage.py stop_engine gpu0; echo "rc=$? after $(el $T) s"
pkill -f foreign.ready; sleep 2
echo "== manage.py gpu_status (after stop)"; python3 manage.py gpu_status; echo "rc=$?"
python3 manage.py engine_status
grep -rE "Error|Traceback|Available KV|backend" /tmp/glmdata/engines/ | head -20
tail -n 5 "$OUT/worker.log" "$OUT/beat.log"
echo "total $(el $T_ALL) s"
