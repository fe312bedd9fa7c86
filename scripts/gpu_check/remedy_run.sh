#!/usr/bin/env bash
# Issue 18's GPU-memory remedy ladder on the lent GPU machine (nvidia-h200-x2, or nvidia-h200 with
# --gpu-ids 0 --tp 1; see README.md beside this file): the GLM-4.7-Flash-architecture engine (--load-format dummy)
# started by glmadmin with sleep mode, its post-start GPU memory recorded by the rules from a real NVML reading,
# the GPU-memory rule raised on that reading, and the ladder (prefix cache reset -> soft -> full restart) run by a
# Celery worker on the host queue (scripts/gpu_check/remedy.py, self-checking: exit status = failed checks).
# Needs /tmp/parts (vLLM wheels, calls 1-5) and carries .gpu/glm itself (glmadmin's wheels, redis-server,
# make_glm47.py from ../shared/gpu-vllm/). Driver arguments pass through. Output goes to $OUT (remedy.txt, the
# engine's and the worker's logs).
set -u
OUT=${OUT:-/tmp/glm-out}; mkdir -p "$OUT"
T_ALL=$(date +%s.%N)
el() { python3 -c "import time; print(f'{time.time()-$1:.1f}')"; }
mkdir -p /tmp/parts; cp .gpu/p*/wheels.tar.* /tmp/parts/ 2>/dev/null
rm -rf /tmp/glm && cp -r .gpu/glm /tmp/glm
cat /tmp/parts/wheels.tar.part-* > /tmp/wheels.tar
want=$(cat /tmp/parts/wheels.tar.sha256); got=$(sha256sum /tmp/wheels.tar | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "SHA MISMATCH (machine went cold?)"; ls -l /tmp/parts; exit 3; }
rm -rf /tmp/wheels && tar -xf /tmp/wheels.tar -C /tmp && rm -f /tmp/wheels.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/wheels/*.whl || exit 4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/glmsite /tmp/glm/wheels/*.whl || exit 4
echo "installed after $(el $T_ALL) s"
# As in soft_restart_run.sh: engines start from a scrubbed environment (PYTHONPATH and NVSHMEM_* passed by name);
# the three NVLS/multicast switches are the recipe for the x2 kind.
export PATH=/tmp/glm/bin:$PATH PYTHONPATH=$PWD:/tmp/glmsite:/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 \
  GLMADMIN_ENGINE_PYTHON=$(command -v python3) GLMADMIN_ENGINE_ENV_PASSTHROUGH=PYTHONPATH,NVSHMEM_DISABLE_NVLS \
  NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 /tmp/glm/make_glm47.py /tmp/glm47 2>&1 | tail -1
nproc; nvidia-smi --query-gpu=index,name,driver_version,memory.used,memory.total --format=csv,noheader
# Bounded below the call's 600 s so that what was printed comes back.
timeout 540 python3 scripts/gpu_check/remedy.py --model /tmp/glm47 --out "$OUT" "$@" 2>&1 | tee "$OUT/remedy.txt"
rc=${PIPESTATUS[0]}
echo "---- engine log (grep)"
for f in "$OUT"/*engine.log; do
  [ -e "$f" ] && grep -E "Error|Traceback|sleep|Sleep|wake|Wake|prefix cache|Available KV|Started server" "$f" | head -40
done
echo "---- worker log (remedy tasks)"
[ -e "$OUT/worker.log" ] && grep -E "remedy|ERROR|Traceback" "$OUT/worker.log" | head -40
echo "total $(el $T_ALL) s; remedy.py exit $rc"
exit "$rc"
