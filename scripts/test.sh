#!/usr/bin/env bash
# Install everything the test suite needs (CPU only) and run it. README's test command.
set -euo pipefail
cd "$(dirname "$0")/.."
# torch first and pinned: an unpinned torch (asked for by any package) pulls gigabytes of CUDA wheels.
python -m pip install --quiet --disable-pip-version-check "torch==2.13.0"
python -m pip install --quiet --disable-pip-version-check -e ".[export,train,quantize,openvino,test]"
python -m pytest -q -p no:cacheprovider "$@"
