# Sourced by the *_run.sh scripts beside it on the lent GPU machine: the vLLM wheels of calls 1-5 (/tmp/parts)
# and glmadmin's own (.gpu/glm, carried by the final call) installed, the environment engines start from, and the
# GLM-4.7-Flash-architecture checkpoint in /tmp/glm47. Defines OUT, T_ALL and el (seconds since a time).
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
# Engines start from a scrubbed environment: PYTHONPATH (the wheels) and NVSHMEM_* are passed on by name; NCCL_*,
# TORCH_*, VLLM_* pass as engine settings. The three NVLS/multicast switches: the recipe for the x2 kind.
export PATH=/tmp/glm/bin:$PATH PYTHONPATH=$PWD:/tmp/glmsite:/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 \
  GLMADMIN_ENGINE_PYTHON=$(command -v python3) GLMADMIN_ENGINE_ENV_PASSTHROUGH=PYTHONPATH,NVSHMEM_DISABLE_NVLS \
  NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
python3 /tmp/glm/make_glm47.py /tmp/glm47 2>&1 | tail -1
nproc; nvidia-smi --query-gpu=index,name,driver_version,memory.used,memory.total --format=csv,noheader
