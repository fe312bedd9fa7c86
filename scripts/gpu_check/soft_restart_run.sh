#!/usr/bin/env bash
# Issue 18's benchmark on the lent GPU machine (nvidia-h200-x2; see README.md beside this file): the
# GLM-4.7-Flash-architecture engine (tensor parallel 2, --load-format dummy) started by glmadmin with sleep mode,
# then restart_engine --soft and the full restart_engine under a steady stream through the gateway
# (scripts/gpu_check/soft_restart.py). Needs /tmp/parts (vLLM wheels, calls 1-5) and carries .gpu/glm itself
# (glmadmin's wheels, redis-server, make_glm47.py from ../shared/gpu-vllm/). Driver arguments pass through.
# Output goes to $OUT (soft_restart.txt, the engine's and the gateway's logs).
set -u
. scripts/gpu_check/glm_setup.sh
# Bounded below the call's 600 s so that what was printed comes back.
timeout 540 python3 scripts/gpu_check/soft_restart.py --model /tmp/glm47 "$@" 2>&1 | tee "$OUT/soft_restart.txt"
echo "---- engine log (grep)"
for f in "$OUT"/*engine.log; do
  [ -e "$f" ] && grep -E "Error|Traceback|sleep|Sleep|wake|Wake|backend|Available KV|took|Started server" "$f" | head -40
done
echo "total $(el $T_ALL) s"
