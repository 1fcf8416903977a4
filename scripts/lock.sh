#!/usr/bin/env bash
# `make lock`: resolves the checked-in locks with uv (pinned in pyproject's dev extra). Every lock is
# universal (any OS and machine, Python 3.11) with the hashes of every file, and keeps the versions
# already pinned unless told otherwise: UV_ARGS="--upgrade-package numpy" (or --upgrade) moves them.
#   requirements/dev.lock   what `make setup` installs: runtime, test and dev extras
#   requirements/image.lock what images/Dockerfile* install after torch: the runtime extras only,
#                           at dev.lock's versions, without the torch/CUDA stack that the images take
#                           from PyTorch's own index (its CUDA builds are not on PyPI)
#   requirements/dev-without-torch.lock   dev.lock without the torch/CUDA stack, for a venv whose torch
#                           comes from PyTorch's CPU-only index (docs/development.md)
#   tests/benchmarks/quality/peers.lock   the peers' venv of `make bench-quality`
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-.venv/bin/uv}
read -r -a extra <<<"${UV_ARGS:-}"
compile() { "$UV" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
              --custom-compile-command "make lock" "${extra[@]}" "$@"; }

compile pyproject.toml --extra test --extra dev -o requirements/dev.lock
# torch, torchvision and what only they need: triton and NVIDIA's CUDA wheels
cuda=$(grep -oE '^(torch|torchvision|triton|nvidia-[a-z0-9-]+|cuda-[a-z0-9-]+)==' requirements/dev.lock | tr -d '=' | sort -u)
no_emit=(); for name in $cuda; do no_emit+=(--no-emit-package "$name"); done
compile pyproject.toml --constraint requirements/dev.lock "${no_emit[@]}" -o requirements/image.lock
compile pyproject.toml --extra test --extra dev --constraint requirements/dev.lock "${no_emit[@]}" \
  -o requirements/dev-without-torch.lock
compile tests/benchmarks/quality/peers-requirements.txt -o tests/benchmarks/quality/peers.lock
