#!/usr/bin/env bash
# Rebuild the bundled default model from a trained run directory holding student.safetensors.
#   bash scripts/build_default_model.sh RUN_DIR
# Exports the uint8 end-to-end ONNX (checked against torch on a real shared pair) and copies the
# weights into sage_edge/assets/. The model card (sage_edge/assets/MODEL_CARD.md) is written by hand
# from the run's train_log.json and `sage-edge eval`.
set -euo pipefail
cd "$(dirname "$0")/.."
run_dir=${1:?usage: build_default_model.sh RUN_DIR}
pair=../shared/data/ivif/M3FD
sage-edge export --model "$run_dir/student.safetensors" -o sage_edge/assets/default.onnx \
    --check-pair "$pair/ir/M3FD_00471.png" "$pair/vis/M3FD_00471.png"
cp "$run_dir/student.safetensors" sage_edge/assets/default.safetensors.tmp
mv sage_edge/assets/default.safetensors.tmp sage_edge/assets/default.safetensors
sha256sum sage_edge/assets/default.onnx sage_edge/assets/default.safetensors
