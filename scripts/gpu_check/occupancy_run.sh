#!/usr/bin/env bash
# Issue 15 on the lent GPU machine (nvidia-h200, GPU 0; see README.md beside this file): a start onto a GPU another
# process holds waits (reason with the holder's pid and GiB, an incident) and goes ahead by itself once the holder is
# gone, and that start runs the engine as its own OS user (GLMADMIN_ENGINE_USER, nobody by default): its processes'
# uids, the data directory closed to it, its GPU memory in NVML, one chat completion. The GLM-4.7-Flash-architecture
# engine (--load-format dummy), stepped by glmadmin's own supervisor (scripts/gpu_check/occupancy.py,
# self-checking: exit status = failed checks). Needs /tmp/parts (vLLM wheels, calls 1-5) and carries .gpu/glm itself.
# Driver arguments pass through. Output goes to $OUT (occupancy.txt, the engine's log).
set -u
. scripts/gpu_check/glm_setup.sh
echo "---- the engine user's ground: who runs this, the GPU device nodes, /dev/shm, cache variables"
id; id nobody; ls -l /dev/nvidia* /dev/shm -d 2>&1 | head -20
env | grep -E '^(HOME|XDG_|HF_|TORCH|TRITON|VLLM_CACHE|CUDA_CACHE|TMPDIR)' | sort
ls -ld /tmp/glm47 /tmp/glm47/* /tmp/site "$(readlink -f "$GLMADMIN_ENGINE_PYTHON")" 2>&1 | head -20
# Bounded below the call's 600 s (and the setup's minute) so that what was printed comes back.
timeout 420 python3 scripts/gpu_check/occupancy.py --model /tmp/glm47 --out "$OUT" "$@" 2>&1 | tee "$OUT/occupancy.txt"
rc=${PIPESTATUS[0]}
echo "---- engine log (grep)"
for f in "$OUT"/*engine.log; do
  [ -e "$f" ] && grep -E "starting|Error|Traceback|denied|Permission|cache|Available KV|Started server" "$f" | head -40
done
echo "total $(el $T_ALL) s; occupancy.py exit $rc"
exit "$rc"
