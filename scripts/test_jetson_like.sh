#!/usr/bin/env bash
# The Jetson install path, for real, on this machine's Debian system Python (what .ci/run runs after
# scripts/test.sh). Debian 12's apt gives what JetPack gives: OpenCV 4.6 built with GStreamer, numpy 1.24,
# GStreamer 1.22 with its RTSP server and PyGObject, on the system Python 3.11; no TensorRT, no CUDA.
#
#   1. apt-get installs the packages README's Jetson block names, plus the tools the stream tests need.
#   2. README's Jetson block runs as it stands, with these changes only (printed before it runs):
#      no `sudo` (we are root), `apt install` -> `apt-get install -y --no-install-recommends`, without
#      python3-libnvinfer and pycuda (NVIDIA's hardware); pip3 is Debian's (/usr/bin first on PATH), with
#      PIP_BREAK_SYSTEM_PACKAGES=1 where Debian's PEP 668 marker is (JetPack 5/6's Ubuntu has none) and
#      PIP_USER=1 with PYTHONUSERBASE in a scratch directory: the user site a Jetson user's `pip3` fills
#      (~/.local), thrown away afterwards, so apt's Python is left as it was.
#   3. `sage-edge doctor` must report OpenCV with GStreamer, from apt, with no pip OpenCV wheel, and apt's numpy.
#   4. The torch-free part of the suite (RUNTIME_TESTS) and the real-stream tests run on that install.
#
# Skips (exit 0, one line saying why) without root or apt-get, or with SAGE_EDGE_SKIP_JETSON_LIKE=1.
# Every network test binds and reaches 127.0.0.1 only. Extra pytest arguments pass through ("$@").
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$(pwd)

skip() { echo "jetson-like: skipped: $*"; exit 0; }
[ "${SAGE_EDGE_SKIP_JETSON_LIKE:-0}" = 1 ] && skip "SAGE_EDGE_SKIP_JETSON_LIKE=1"
command -v apt-get >/dev/null 2>&1 || skip "no apt-get (this needs Debian or Ubuntu)"
[ "$(id -u)" = 0 ] || skip "apt-get needs root (run it as root: sudo bash scripts/test_jetson_like.sh)"

# the torch-free test modules (what a Jetson without torch runs) and the real-stream tests
RUNTIME_TESTS="test_pairing test_pipeline test_sources test_registration test_image_io test_colour test_doctor
  test_stats test_tegrastats test_zoo test_torch_free test_fuse_errors test_run_cli test_http_output
  test_live_gstreamer"
# what the stream tests use besides README's packages: encoders/decoders, the RTSP client, an X server, ffprobe
TEST_PACKAGES="gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav
  gstreamer1.0-rtsp gstreamer1.0-tools xvfb ffmpeg python3-pytest"

WORK=$(mktemp -d /tmp/sage-edge-jetson-like.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
started=$SECONDS
phase() { echo "jetson-like: $1 ($((SECONDS - started)) s so far)"; }

# ------------------------------------------------------------------------------------------ README's block
block=$(awk '/<!-- jetson-install/ {inside = 1; next} /<!-- \/jetson-install/ {inside = 0} inside' README.md |
        sed -n '/^```bash$/,/^```$/p' | sed '1d;$d')
[ -n "$block" ] || { echo "jetson-like: README.md has no jetson-install block"; exit 1; }
commands=$(printf '%s\n' "$block" | sed -E \
  -e 's/[[:space:]]+#.*$//' \
  -e 's/^sudo //' \
  -e 's/^apt install /apt-get install -y -qq --no-install-recommends /' \
  -e 's/ python3-libnvinfer( |$)/\1/' \
  -e 's/ pycuda( |$)/\1/')
apt_line=$(printf '%s\n' "$commands" | grep '^apt-get install')
[ -n "$apt_line" ] || { echo "jetson-like: README's block has no apt install line"; exit 1; }

# ------------------------------------------------------------------------------------------ 1. apt
export DEBIAN_FRONTEND=noninteractive
APT_OPTIONS=(-o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-unsafe-io)
phase "apt-get update"
apt-get "${APT_OPTIONS[@]}" update -qq || { sleep 10; apt-get "${APT_OPTIONS[@]}" update -qq; }
phase "apt-get install (README's packages and the test tools)"
# shellcheck disable=SC2086  # word splitting of the package lists is intended
apt-get "${APT_OPTIONS[@]}" install -y -qq --no-install-recommends ${apt_line#apt-get install -y -qq --no-install-recommends } \
  $TEST_PACKAGES > "$WORK/apt.log" || { tail -30 "$WORK/apt.log"; exit 1; }

# ------------------------------------------------------------------------------------------ 2. README's steps
export PATH="$WORK/userbase/bin:/usr/bin:/bin" PYTHONUSERBASE="$WORK/userbase" PIP_USER=1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_ROOT_USER_ACTION=ignore PIP_NO_INPUT=1
if ls /usr/lib/python3*/EXTERNALLY-MANAGED >/dev/null 2>&1; then
  export PIP_BREAK_SYSTEM_PACKAGES=1  # Debian's PEP 668 marker; JetPack 5/6 (Ubuntu 20.04/22.04) have none
fi
phase "README's Jetson steps, as run here:"
printf '%s\n' "$commands" | sed 's/^/    /'
bash -euo pipefail -c "$commands" 2>&1 | tee "$WORK/readme.log"

# ------------------------------------------------------------------------------------------ 3. what doctor says
doctor=$(sage-edge doctor)
fail=0
expect() {  # expect NAME REGEX: doctor's NAME line must be OK and match
  local line
  line=$(printf '%s\n' "$doctor" | grep -E "^OK +$1 " || true)
  if [ -z "$line" ] || ! printf '%s\n' "$line" | grep -Eq "$2"; then
    echo "jetson-like: doctor's $1 line should be OK and match '$2'; it says:"
    printf '%s\n' "$doctor" | grep -E " $1 " || echo "    (no $1 line)"
    fail=1
  fi
}
expect opencv "at /usr/lib/python3[.0-9]*/dist-packages/cv2.*GStreamer: YES.*; no pip OpenCV wheel"
expect numpy "at /usr/lib/python3[.0-9]*/dist-packages/numpy/"
[ "$fail" = 0 ] || exit 1
(cd "$WORK" && /usr/bin/python3 -c "import cv2, numpy, sage_edge; print('jetson-like: OpenCV', cv2.__version__,
  '+ numpy', numpy.__version__, 'from apt; sage-edge', sage_edge.__version__, 'from', sage_edge.__file__)")

# ------------------------------------------------------------------------------------------ 4. the tests
phase "the torch-free suite and the real-stream tests on this install"
tests=()
for name in $RUNTIME_TESTS; do
  [ -f "tests/$name.py" ] && tests+=("$REPO/tests/$name.py")
done
# from a scratch directory: the installed package is imported, not the source tree
(cd "$WORK" && /usr/bin/python3 -m pytest -q -p no:cacheprovider --rootdir "$REPO" -c "$REPO/pyproject.toml" \
   -rs --durations=12 "${tests[@]}" "$@")
phase "done"
