#!/usr/bin/env bash
# The GPU check (benchmarks/gpu_check.py) as one command, within 8 minutes on a GPU machine.
#
#   bash benchmarks/gpu.sh prepare   # here, with the package index and the ffmpeg program: the 20 s clip
#                                    # and the wheels a bare GPU machine lacks (for its Python, GPU_PYTHON_VERSION)
#   bash benchmarks/gpu.sh           # on the GPU machine, from the repository root, with benchmarks/wheels and
#                                    # benchmarks/videos/720p30_20s.mp4 carried there; extra arguments go to gpu_check.py
#
# The GPU machines of this project have Python 3.12 with torch, torchvision, numpy, PyYAML, tqdm and
# psutil; the wheels add PyAV, Hydra, OmegaConf and ANTLR's runtime (published only as a source
# archive, so built here). PyAV's wheel is abi3: one file for Python 3.11 and later.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
WHEELS=${WHEELS:-benchmarks/wheels}
CLIP=benchmarks/videos/720p30_20s.mp4
BINARY=(av==18.1.0 hydra-core==1.3.8 omegaconf==2.3.1)
SOURCE_ONLY=(antlr4-python3-runtime==4.9.3)

if [ "${1:-}" = "prepare" ]; then
  "$PYTHON" -c 'import sys; sys.path.insert(0, "benchmarks"); from benchmark import make_video; make_video(20)'
  rm -rf "$WHEELS"
  "$PYTHON" -m pip download -q --disable-pip-version-check --no-deps --only-binary :all: \
    --python-version "${GPU_PYTHON_VERSION:-3.12}" --implementation cp --platform manylinux_2_28_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$WHEELS" "${BINARY[@]}"
  "$PYTHON" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WHEELS" "${SOURCE_ONLY[@]}"
  carried=$(du -cb "$CLIP" "$WHEELS"/*.whl $(git ls-files) | tail -1 | cut -f1)
  echo "carry: $WHEELS $CLIP ($((carried / 1048576)) MiB with the working tree; the limit is 64 MiB)"
  [ "$carried" -lt $((64 * 1048576)) ] || { echo "error: over 64 MiB" >&2; exit 1; }
  exit 0
fi

# what the GPU machine lacks, from the carried wheels, without the network (SITE: where they go)
SITE=${SITE:-/tmp/gpu-check-site}
if ! "$PYTHON" -c 'import av, hydra, omegaconf' 2>/dev/null; then
  "$PYTHON" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --target "$SITE" \
    "$WHEELS"/*.whl
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
# the working tree as the package video_features where it is not installed (the GPU machine's copy)
if ! "$PYTHON" -c 'import video_features' 2>/dev/null; then
  mkdir -p "$SITE/project" && ln -sfn "$PWD" "$SITE/project/video_features"
  export PYTHONPATH="$SITE/project${PYTHONPATH:+:$PYTHONPATH}"
fi
if [ "${1:-}" = "install" ]; then exit 0; fi
"$PYTHON" -c 'import torch; assert torch.cuda.is_available(), "no CUDA device"'
PYTHONUNBUFFERED=1 timeout 480 "$PYTHON" benchmarks/gpu_check.py "$@"
