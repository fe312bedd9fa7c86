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
. scripts/gpu_check/glm_setup.sh
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
