#!/usr/bin/env bash
# CPU side of the real-GPU checks: glmadmin's own runtime for the lent GPU machine, into .gpu/glm (ignored by
# git; carried by the device calls). The wheels are those requirements.txt resolves to for the image's Python
# 3.12 (so the list cannot drift from the project's), a redis-server with the shared libraries it needs beyond
# glibc (bin/redis-server sets LD_LIBRARY_PATH), and the GLM-4.7-Flash-architecture checkpoint writer.
# The vLLM wheels themselves come from ../shared/gpu-vllm/prepare.sh (.gpu/p1..p5).
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF '/.gpu/' "$exclude" 2>/dev/null || echo '/.gpu/' >> "$exclude"
rm -rf .gpu/glm && mkdir -p .gpu/glm/wheels .gpu/glm/redis .gpu/glm/bin
# The image already has torch's big neighbours; nothing in requirements.txt pulls them in.
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform any -d .gpu/glm/wheels -r requirements.txt
cp "$(command -v redis-server)" .gpu/glm/redis/
ldd "$(command -v redis-server)" | awk '/=> \// {print $3}' \
  | grep -v -E '/(libc|libm|libpthread|libdl|librt|ld-linux[^/]*)\.so' | xargs -r -I{} cp {} .gpu/glm/redis/
cat > .gpu/glm/bin/redis-server <<'WRAP'
#!/bin/sh
LD_LIBRARY_PATH=/tmp/glm/redis exec /tmp/glm/redis/redis-server "$@"
WRAP
chmod +x .gpu/glm/bin/redis-server
cp ../shared/gpu-vllm/make_glm47.py .gpu/glm/
du -sh .gpu/glm
