#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) as one command, within 8 minutes on a GPU machine.
#
#   bash benchmarks/gpu.sh prepare   # here, with network access: the 20 s clip and the wheels a bare GPU machine lacks
#   bash benchmarks/gpu.sh           # on the GPU machine, from the repository root (carry benchmarks/videos and
#                                    # benchmarks/wheels there); extra arguments go to gpu_check.py
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=benchmarks/wheels
PACKAGES=(av==18.1.0 hydra-core==1.3.8 omegaconf==2.3.1 antlr4-python3-runtime==4.9.3 PyYAML tqdm)

if [ "${1:-}" = "prepare" ]; then
  "$PYTHON" -c 'import sys; sys.path.insert(0, "benchmarks"); from benchmark import make_video; make_video(20)'
  "$PYTHON" -m pip download -q --disable-pip-version-check --only-binary :all: -d "$WHEELS" "${PACKAGES[@]}"
  du -sh benchmarks/videos/720p30_20s.mp4 "$WHEELS"
  exit 0
fi

if ! "$PYTHON" -c 'import av, hydra, omegaconf, tqdm' 2>/dev/null; then
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --find-links "$WHEELS" "${PACKAGES[@]}"
fi
"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"'
timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
