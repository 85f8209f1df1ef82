#!/usr/bin/env bash
# GPU acceptance: the first thing to run on a Jetson (or any machine with an NVIDIA GPU).
#
#   scripts/gpu_acceptance.sh [--out DIR] [--data DIR] [--model MODEL.onnx] [--int8-onnx Q.onnx]
#                             [--python PY] [--pairs N] [--iterations N] [--no-pytest] [--no-pycuda-build]
#
# Builds FP32, FP16 and INT8 TensorRT engines from the default model (INT8 via `sage-edge quantize`
# Q/DQ, then `build-engine --int8`; give --int8-onnx when the Q/DQ ONNX was made on a desktop,
# where ModelOpt runs), runs `verify` on each, the `gpu`-marked tests and `bench`, and writes ONE
# report, DIR/report.md: versions (JetPack/L4T, TensorRT, CUDA, driver, pycuda, GPU) and every
# step's result with the end of its log. A failing step is reported and the next one runs.
# With a GPU but no TensorRT it still exercises pycuda's pinned and mapped memory and CUDA-graph
# capture for real (python -m sage_edge.runtime.cuda_check); pycuda is built from its source
# package into DIR/pycuda when it is missing and nvcc is there.
# On a machine with no NVIDIA GPU it stops at once: report.md says so, exit status 2.
# Exit status: 0 all steps passed or were skipped, 1 a step failed, 2 no NVIDIA GPU.
#
# Why a bash script and not a sage-edge command: it must report even when sage-edge itself cannot
# import (a broken install is a finding), it runs each step exactly as a user types it, and it
# drives pip and pytest from outside the package.
set -u
set -o pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="gpu_acceptance_$(date +%Y%m%d-%H%M%S)"
DATA=""
MODEL=""
INT8_ONNX=""
PY="${PYTHON:-python3}"
PAIRS=8
ITERATIONS=100
RUN_PYTEST=1
BUILD_PYCUDA=1

usage() { sed -n '2,9p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) OUT="$2"; shift 2 ;;
        --data) DATA="$2"; shift 2 ;;
        --model) MODEL="$2"; shift 2 ;;
        --int8-onnx) INT8_ONNX="$2"; shift 2 ;;
        --python) PY="$2"; shift 2 ;;
        --pairs) PAIRS="$2"; shift 2 ;;
        --iterations) ITERATIONS="$2"; shift 2 ;;
        --no-pytest) RUN_PYTEST=0; shift ;;
        --no-pycuda-build) BUILD_PYCUDA=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "error: unknown option $1 (see --help)" >&2; exit 64 ;;
    esac
done

mkdir -p "$OUT/logs" || { echo "error: cannot create $OUT" >&2; exit 1; }
OUT="$(cd "$OUT" && pwd)"
LOGS="$OUT/logs"
REPORT="$OUT/report.md"
RESULTS="$LOGS/results.tsv"
: > "$RESULTS"
STEP_NO=0

# -- helpers -----------------------------------------------------------------------------------
have() { command -v "$1" > /dev/null 2>&1; }

first_line() { head -n 1 | tr -d '\r'; }

# step NAME CMD... : run CMD, log it, record PASS/FAIL; never stops the script.
step() {
    local name="$1"; shift
    STEP_NO=$((STEP_NO + 1))
    local log
    log="$LOGS/$(printf '%02d' "$STEP_NO")-$name.log"
    echo "== $name: $*" | tee "$log"
    local start end rc
    start=$(date +%s)
    "$@" >> "$log" 2>&1
    rc=$?
    end=$(date +%s)
    local status="PASS"
    [ "$rc" -eq 0 ] || status="FAIL"
    local summary  # the step's last line: sage-edge's "wrote ..." / "verify passed" / "error: ...", pytest's tally
    summary="$(grep -v -e '^== ' -e '^[[:space:]]*$' "$log" | tail -n 1 | cut -c1-200)"
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$status" "$((end - start))" "$log" "${summary:-exit status $rc}" >> "$RESULTS"
    echo "   $status ($((end - start)) s)"
    return 0
}

# skip NAME REASON
skip() {
    STEP_NO=$((STEP_NO + 1))
    printf '%s\t%s\t%s\t%s\t%s\n' "$1" "SKIP" "0" "" "$2" >> "$RESULTS"
    echo "== $1: SKIP ($2)"
}

passed() { awk -F'\t' -v n="$1" '$1 == n && $2 == "PASS" { ok = 1 } END { exit !ok }' "$RESULTS"; }

pyver() { "$PY" -c "$1" 2> /dev/null | first_line; }

write_report() {
    local verdict="$1"
    local tmp="$REPORT.tmp.$$"
    {
        echo "# sage-edge GPU acceptance report"
        echo
        echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "- host: $(uname -n) ($(uname -m), $(uname -r))"
        echo "- verdict: **$verdict**"
        echo
        echo "## Versions"
        echo
        echo "| component | version |"
        echo "|---|---|"
        while IFS=$'\t' read -r key value; do
            echo "| $key | ${value:-not found} |"
        done < "$LOGS/versions.tsv"
        if [ -s "$RESULTS" ]; then
            echo
            echo "## Steps"
            echo
            echo "| step | result | seconds | summary |"
            echo "|---|---|---|---|"
            while IFS=$'\t' read -r name status seconds _log summary; do
                echo "| $name | $status | $seconds | ${summary//|/\\|} |"
            done < "$RESULTS"
            echo
            echo "## Logs (last 40 lines of each step)"
            while IFS=$'\t' read -r name status _seconds log _summary; do
                [ -n "$log" ] && [ -f "$log" ] || continue
                echo
                echo "### $name ($status)"
                echo
                echo '```'
                tail -n 40 "$log"
                echo '```'
            done < "$RESULTS"
        fi
    } > "$tmp" && mv -f "$tmp" "$REPORT"
}

# -- versions (no Python needed for the first lines) -----------------------------------------------
{
    printf 'platform\t%s\n' "$(uname -s -r -m)"
    l4t=""
    if [ -r /etc/nv_tegra_release ]; then
        l4t="$(first_line < /etc/nv_tegra_release | sed -E 's/^# R([0-9]+) \(release\), REVISION: ([0-9.]+).*/\1.\2/')"
    fi
    printf 'L4T (Jetson Linux)\t%s\n' "$l4t"
    jetpack=""
    have dpkg-query && jetpack="$(dpkg-query -W -f '${Version}' nvidia-jetpack 2> /dev/null)"
    printf 'JetPack (nvidia-jetpack package)\t%s\n' "$jetpack"
    model=""
    [ -r /proc/device-tree/model ] && model="$(tr -d '\0' < /proc/device-tree/model)"
    printf 'module (device tree)\t%s\n' "$model"
    gpu=""; driver=""
    if have nvidia-smi; then
        gpu="$(nvidia-smi --query-gpu=name --format=csv,noheader 2> /dev/null | first_line)"
        driver="$(nvidia-smi --query-gpu=driver_version --format=csv,noheader 2> /dev/null | first_line)"
    fi
    printf 'GPU (nvidia-smi)\t%s\n' "$gpu"
    printf 'driver\t%s\n' "${driver:-${l4t:+L4T $l4t (the Jetson driver ships with Jetson Linux)}}"
    cuda=""
    if have nvcc; then
        cuda="$(nvcc --version 2> /dev/null | grep -o 'release [0-9.]*' | first_line)"
    elif [ -r /usr/local/cuda/version.json ]; then
        cuda="$(grep -o '"version" *: *"[0-9.]*"' /usr/local/cuda/version.json | first_line)"
    fi
    printf 'CUDA toolkit\t%s\n' "$cuda"
    printf 'python\t%s\n' "$("$PY" --version 2>&1 | first_line)"
} > "$LOGS/versions.tsv"

# -- is there an NVIDIA GPU at all? (fail fast, before anything slow) ------------------------------
gpu_evidence=""
if have nvidia-smi && nvidia-smi -L 2> /dev/null | grep -q '^GPU '; then
    gpu_evidence="nvidia-smi lists $(nvidia-smi -L | grep -c '^GPU ') GPU(s)"
elif compgen -G '/proc/driver/nvidia/gpus/*' > /dev/null; then
    gpu_evidence="/proc/driver/nvidia/gpus"
elif [ -r /etc/nv_tegra_release ] && { [ -e /dev/nvhost-ctrl-gpu ] || [ -e /dev/nvgpu/igpu0/ctrl ] || [ -e /dev/nvidia0 ]; }; then
    gpu_evidence="Jetson integrated GPU ($(tr -d '\0' < /proc/device-tree/model 2> /dev/null))"
fi
if [ -n "${SAGE_EDGE_ACCEPTANCE_ASSUME_GPU:-}" ]; then
    gpu_evidence="assumed by SAGE_EDGE_ACCEPTANCE_ASSUME_GPU (testing this script's flow without a GPU)"
fi
if [ -z "$gpu_evidence" ]; then
    printf 'NVIDIA GPU\t%s\n' "none: no nvidia-smi GPU, no /proc/driver/nvidia/gpus, no Jetson GPU device" >> "$LOGS/versions.tsv"
    write_report "no NVIDIA GPU found on this machine: nothing was built or run"
    echo "error: no NVIDIA GPU found on this machine (checked nvidia-smi -L, /proc/driver/nvidia/gpus, Jetson GPU devices); report: $REPORT" >&2
    exit 2
fi
printf 'NVIDIA GPU\t%s\n' "$gpu_evidence" >> "$LOGS/versions.tsv"

# -- Python side: sage-edge, TensorRT, pycuda --------------------------------------------------------
SAGE=("$PY" -m sage_edge.cli)
printf 'sage-edge\t%s\n' "$(pyver 'import sage_edge; print(sage_edge.__version__)')" >> "$LOGS/versions.tsv"
printf 'TensorRT\t%s\n' "$(pyver 'import tensorrt; print(tensorrt.__version__)')" >> "$LOGS/versions.tsv"

# A CUDA toolkit pycuda can build against: nvcc and the driver API header cuda.h under one root.
cuda_root=""
for root in "${CUDA_ROOT:-}" "${CUDA_HOME:-}" /usr/local/cuda "$(dirname "$(dirname "$(command -v nvcc 2> /dev/null || echo /none/bin/nvcc)")")"; do
    if [ -n "$root" ] && [ -x "$root/bin/nvcc" ] && [ -f "$root/include/cuda.h" ]; then
        cuda_root="$root"
        break
    fi
done
if ! "$PY" -c 'import pycuda.driver' > /dev/null 2>&1; then
    if [ "$BUILD_PYCUDA" -eq 0 ]; then
        skip build-pycuda "pycuda is not installed (--no-pycuda-build)"
    elif [ -n "$cuda_root" ]; then
        # pycuda has no wheels: pip builds it from its source package; its setup.py takes CUDA_ROOT from the
        # first nvcc on PATH, so that nvcc is this toolkit's.
        step build-pycuda env PATH="$cuda_root/bin:$PATH" "$PY" -m pip install --no-binary pycuda --target "$OUT/pycuda" pycuda
        passed build-pycuda && export PYTHONPATH="$OUT/pycuda${PYTHONPATH:+:$PYTHONPATH}"
    else
        skip build-pycuda "pycuda is not installed and no CUDA toolkit with nvcc and cuda.h was found (JetPack: sudo apt install nvidia-jetpack; then CUDA_ROOT=/usr/local/cuda)"
    fi
fi
printf 'pycuda\t%s\n' "$(pyver 'import pycuda; print(".".join(map(str, pycuda.VERSION)))')" >> "$LOGS/versions.tsv"
printf 'GPU (CUDA: cuDeviceGetName)\t%s\n' "$(pyver 'from sage_edge.runtime.cuda_memory import device_info; i = device_info(0); print(f"{i.name}, sm {i.compute_capability}, {i.total_memory >> 20} MiB")')" >> "$LOGS/versions.tsv"

step doctor "${SAGE[@]}" doctor
step cuda-check "$PY" -m sage_edge.runtime.cuda_check --json "$OUT/cuda_check.json"

# -- data for verify / quantize / bench ----------------------------------------------------------------
if [ -z "$DATA" ] && [ -d "$REPO/../shared/data/ivif" ]; then
    DATA="$REPO/../shared/data/ivif"
fi
if [ -z "$DATA" ]; then
    DATA="$OUT/data"
    step synthetic-pairs "$PY" -c "
import sys
from pathlib import Path
from sage_edge.imageio import write_image
from sage_edge.samples import synthetic_pair
root = Path(sys.argv[1]) / 'synthetic'
for k in range(8):
    ir, vis = synthetic_pair(480, 640, seed=k)
    write_image(root / 'ir' / f'{k:04d}.png', ir)
    write_image(root / 'vis' / f'{k:04d}.png', vis)
print(f'wrote 8 synthetic pairs to {root} (no --data given: verify compares against ONNX Runtime on these)')
" "$DATA"
fi

# -- TensorRT: build, verify, test, bench --------------------------------------------------------------
if ! "$PY" -c 'import tensorrt' > /dev/null 2>&1; then
    for name in check-trt build-fp32 build-fp16 quantize-int8 build-int8 verify-fp32 verify-fp16 verify-int8 \
        bench-fp32 bench-fp16 bench-int8; do
        skip "$name" "TensorRT is not importable with $PY (JetPack: sudo apt install python3-libnvinfer)"
    done
else
    if [ -z "$MODEL" ]; then
        MODEL="$(pyver 'from sage_edge.zoo import resolve_model; print(resolve_model("default", want="onnx"))')"
    fi
    if "${SAGE[@]}" check-trt --help > /dev/null 2>&1; then
        step check-trt "${SAGE[@]}" check-trt "$MODEL"
    else
        skip check-trt "this sage-edge has no check-trt command"
    fi
    step build-fp32 "${SAGE[@]}" build-engine "$MODEL" -o "$OUT/default_fp32.engine" --timing-cache "$OUT/timing.cache"
    step build-fp16 "${SAGE[@]}" build-engine "$MODEL" --fp16 -o "$OUT/default_fp16.engine" --timing-cache "$OUT/timing.cache"
    if [ -z "$INT8_ONNX" ]; then
        INT8_ONNX="$OUT/default_int8.onnx"
        step quantize-int8 "${SAGE[@]}" quantize "$MODEL" --calib "$DATA" -o "$INT8_ONNX"
    else
        skip quantize-int8 "Q/DQ ONNX given: $INT8_ONNX"
    fi
    if [ -f "$INT8_ONNX" ]; then
        step build-int8 "${SAGE[@]}" build-engine "$INT8_ONNX" --int8 -o "$OUT/default_int8.engine" --timing-cache "$OUT/timing.cache"
    else
        skip build-int8 "no Q/DQ ONNX (quantize needs ModelOpt: run it on a desktop and pass --int8-onnx)"
    fi
    for precision in fp32 fp16 int8; do
        engine="$OUT/default_$precision.engine"
        if [ -f "$engine" ]; then
            step "verify-$precision" "${SAGE[@]}" verify "$engine" --data "$DATA" --pairs "$PAIRS"
        else
            skip "verify-$precision" "no $precision engine was built"
        fi
    done
    for precision in fp32 fp16 int8; do
        engine="$OUT/default_$precision.engine"
        if [ -f "$engine" ]; then
            step "bench-$precision" "${SAGE[@]}" bench --model "$engine" --backend tensorrt --precision "$precision" \
                --resolution 640x480 --iterations "$ITERATIONS" --data "$DATA" --json "$OUT/bench_$precision.json" --quiet
        else
            skip "bench-$precision" "no $precision engine was built"
        fi
    done
fi

if [ "$RUN_PYTEST" -eq 1 ] && [ -d "$REPO/tests" ]; then
    step gpu-tests "$PY" -m pytest -q -p no:cacheprovider -m gpu -rs "$REPO/tests"
else
    skip gpu-tests "--no-pytest, or no tests/ folder beside this script"
fi

failed="$(awk -F'\t' '$2 == "FAIL"' "$RESULTS" | wc -l | tr -d ' ')"
passed_n="$(awk -F'\t' '$2 == "PASS"' "$RESULTS" | wc -l | tr -d ' ')"
skipped="$(awk -F'\t' '$2 == "SKIP"' "$RESULTS" | wc -l | tr -d ' ')"
write_report "$passed_n passed, $failed failed, $skipped skipped"
echo "report: $REPORT ($passed_n passed, $failed failed, $skipped skipped)"
[ "$failed" -eq 0 ]
