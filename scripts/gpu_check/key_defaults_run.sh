#!/usr/bin/env bash
# Issue 13's key defaults on the lent GPU machine (nvidia-h200 with --gpu-ids 0 --tp 1; see README.md beside this
# file): the GLM-4.7-Flash-architecture engine (--load-format dummy) started by glmadmin, one API key with nothing but
# the defaults, and a batch client's streams through the gateway at growing concurrency
# (scripts/gpu_check/key_defaults.py). Needs /tmp/parts (vLLM wheels, calls 1-5) and carries .gpu/glm itself.
# Driver arguments pass through. Output goes to $OUT (key_defaults.txt).
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
timeout 540 python3 scripts/gpu_check/key_defaults.py --model /tmp/glm47 "$@" 2>&1 | tee "$OUT/key_defaults.txt"
rc=${PIPESTATUS[0]}
echo "total $(el $T_ALL) s; key_defaults.py exit $rc"
exit "$rc"
