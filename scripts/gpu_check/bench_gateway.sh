#!/usr/bin/env bash
# bench/gateway on the lent GPU machine (see README.md beside this file): a CUDA vLLM engine with the tiny
# model behind glmadmin's gateway. Needs /tmp/parts (vLLM wheels) and /tmp/glm (glmadmin's wheels and
# redis-server) from the earlier calls; bench arguments pass through. Output goes to $OUT.
set -u
OUT=${OUT:-/tmp/glm-out}; mkdir -p "$OUT"
mkdir -p /tmp/parts; cp .gpu/p*/wheels.tar.* /tmp/parts/ 2>/dev/null
cat /tmp/parts/wheels.tar.part-* > /tmp/wheels.tar
want=$(cat /tmp/parts/wheels.tar.sha256); got=$(sha256sum /tmp/wheels.tar | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "SHA MISMATCH (machine went cold?)"; exit 3; }
rm -rf /tmp/wheels && tar -xf /tmp/wheels.tar -C /tmp && rm -f /tmp/wheels.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site /tmp/wheels/*.whl || exit 4
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/glmsite /tmp/glm/wheels/*.whl || exit 4
# Engines start from a scrubbed environment: PYTHONPATH (the wheels) is passed on by name. The tiny model
# knows 2,048 positions; the engine's default context is longer.
export PATH=/tmp/glm/bin:$PATH PYTHONPATH=$PWD:/tmp/glmsite:/tmp/site HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 \
  VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1 PYTHONUNBUFFERED=1 VLLM_USE_FLASHINFER_SAMPLER=0 \
  GLMADMIN_ENGINE_PYTHON=$(command -v python3) GLMADMIN_ENGINE_ENV_PASSTHROUGH=PYTHONPATH VLLM_ALLOW_LONG_MAX_MODEL_LEN=1
python3 .gpu/p5/make_tiny_model.py /tmp/tiny 2>&1 | tail -1
nproc; nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
python3 bench/gateway/run.py --model /tmp/tiny "$@" 2>&1 | tee "$OUT/bench_gateway.txt"
