#!/usr/bin/env bash
# Issue 13's key defaults on the lent GPU machine (nvidia-h200 with --gpu-ids 0 --tp 1; see README.md beside this
# file): the GLM-4.7-Flash-architecture engine (--load-format dummy) started by glmadmin, one API key with nothing but
# the defaults, and a batch client's streams through the gateway at growing concurrency
# (scripts/gpu_check/key_defaults.py). Needs /tmp/parts (vLLM wheels, calls 1-5) and carries .gpu/glm itself.
# Driver arguments pass through. Output goes to $OUT (key_defaults.txt).
set -u
. scripts/gpu_check/glm_setup.sh
# Bounded below the call's 600 s so that what was printed comes back.
timeout 540 python3 scripts/gpu_check/key_defaults.py --model /tmp/glm47 "$@" 2>&1 | tee "$OUT/key_defaults.txt"
rc=${PIPESTATUS[0]}
echo "total $(el $T_ALL) s; key_defaults.py exit $rc"
exit "$rc"
