#!/usr/bin/env bash
# bench/gateway's paced part with its peers (LiteLLM, glmadmin at an older commit) on the CPUs of a lent
# device machine (idle cores, no GPU used, no network): what the 2-core build machine, shared by other
# sessions, cannot say without their load in it. Bench arguments pass through; output goes to $OUT.
#
# Prepared on the build machine (network), each part under 64 MiB:
#   pip download --only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux2014_x86_64
#     (and the other manylinux tags) -d llw "litellm[proxy]==1.108.7" httptools==0.9.0
#   tar -cf llw.tar llw; split -b 60m -d llw.tar llw.tar.part-  -> .gpu/litellm/p0, p1, p2 (+ llw.sha256)
#   git archive --prefix=gw-OLD/ OLD | gzip > .gpu/litellm/p2/old.tar.gz
# Calls 1-3 carry .gpu/litellm/pN and copy it to /tmp/llparts; call 4 carries .gpu/glm (glmadmin's wheels
# and redis-server, scripts/gpu_check/prepare_glm.sh) and runs
#   set -o pipefail; bash bench/gateway/device_paced.sh --rounds 5 --seconds 4 2>&1 | tee $OUT/run.log
set -u
OUT=${OUT:-/tmp/glm-out}; mkdir -p "$OUT"
cat /tmp/llparts/llw.tar.part-* > /tmp/llw.tar
want=$(cat /tmp/llparts/llw.sha256); got=$(sha256sum /tmp/llw.tar | cut -d' ' -f1)
[ "$want" = "$got" ] || { echo "SHA MISMATCH (machine went cold?)"; exit 3; }
rm -rf /tmp/llw && tar -xf /tmp/llw.tar -C /tmp && rm -f /tmp/llw.tar
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/glmsite \
  /tmp/glm/wheels/*.whl || exit 4
if [ ! -x /tmp/llvenv/bin/litellm ]; then
  python3 -m venv /tmp/llvenv 2>/dev/null || python3 -m venv --without-pip /tmp/llvenv || exit 5
  python3 -m pip --python /tmp/llvenv/bin/python install -q --no-index --find-links /tmp/llw \
    "litellm[proxy]==1.108.7" httptools==0.9.0 || exit 5
fi
old=$(tar -tzf /tmp/llparts/old.tar.gz | head -1 | cut -d/ -f1)
rm -rf "/tmp/$old" && tar -xzf /tmp/llparts/old.tar.gz -C /tmp || exit 6
export PATH=/tmp/glm/bin:$PATH PYTHONPATH=$PWD:/tmp/glmsite PYTHONUNBUFFERED=1 \
  GLMADMIN_BENCH_LITELLM_VENV=/tmp/llvenv
nproc; uptime
python3 bench/gateway/run.py --only paced --old "/tmp/$old" "$@" 2>&1 | tee "$OUT/bench_gateway.txt"
cp bench/results/gateway-*.json "$OUT/" 2>/dev/null
uptime
