"""One line, everywhere: bad input to every command exits non-zero with ONE clear line that says what to do,
no traceback, and no partial output file.

Each row of ``CASES`` is a command line with placeholders (``{ro}``, ``{full}``, ``{pair_ir}``, ...) filled in
by the ``world`` fixture, and a fragment the error line must contain. They run in-process through click's
CliRunner, except the rows that simulate a base install (``BASE_INSTALL``: torch, onnx, ModelOpt, matplotlib
... blocked in ``sys.modules``), which run together in one subprocess, and one row that needs a closed pipe.

Output folders that really refuse writes, also for root:
  * ``{ro}``: a read-only tmpfs mounted by the test (root), or a chmod 0555 folder (any other user);
  * ``{full}``: a 16 KiB tmpfs filled to the last byte (root only; those rows skip elsewhere, with the reason);
  * ``{afile}/x``: a path through a regular file (ENOTDIR for everyone).
After every row the watched folders (``{out}``, ``{ro}``, ``{full}``) must hold exactly what they held before.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from sage_edge.cli import main

REPO = Path(__file__).resolve().parents[1]
TRACEBACK = "Traceback (most recent call last)"
# Lines a failing command may print before its error line: progress bars and notes.
ALLOWED_OTHER_LINE = re.compile(r"(\d+%\|)|(\|\s*\d+/\d+)|(^\s*$)|(^note: )|(^skipped )")


@dataclass(frozen=True)
class Case:
    id: str
    args: tuple[str, ...]
    expect: str  # regex searched in the error line
    needs: tuple[str, ...] = ()  # "ro", "full", or importable modules
    base_install: bool = False  # run in the subprocess where optional extras are blocked
    env: dict = field(default_factory=dict)


def case(id: str, args: str, expect: str, *needs: str, base_install: bool = False, **env: str) -> Case:
    return Case(id, tuple(args.split()), expect, needs, base_install, env)


UNWRITABLE = r"(read-only file system|permission denied).*choose an output folder"
NO_SPACE = r"no space left on the disk.*nothing was written"
CASES = [
    # fuse
    case("fuse-unwritable-folder", "fuse --demo -o {ro}/fused.png", UNWRITABLE, "ro"),
    case("fuse-dir-unwritable-folder", "fuse {data} -o {ro}/fused", UNWRITABLE, "ro"),
    case("fuse-full-disk", "fuse {pair_ir} {pair_vis} -o {full}/fused.png", NO_SPACE, "full"),
    case("fuse-dir-full-disk", "fuse {data} -o {full}/fused", NO_SPACE, "full"),
    case("fuse-path-through-a-file", "fuse --demo -o {afile}/fused.png", r"afile\.txt is a file, not a folder"),
    case("fuse-output-is-a-directory", "fuse --demo -o {out}", r"is a directory; give an image file name"),
    case("fuse-swapped", "fuse {pair_vis} {grey_ir} -o {out}/f.png", r"look swapped.*IR comes first"),
    case("fuse-too-small", "fuse {tiny_ir} {tiny_vis} -o {out}/f.png", r"a 12x10 frame is smaller than the border padding needs.*--border-pad 0"),
    case("fuse-truncated-ir", "fuse {truncated} {pair_vis} -o {out}/f.png", r"truncated PNG"),
    case("fuse-text-as-onnx", "fuse --demo -o {out}/f.png --model {text_onnx}", r"not a loadable ONNX model"),
    case("fuse-onnx-not-fusion", "fuse --demo -o {out}/f.png --model {relu_onnx}",
         r"relu\.onnx: not a sage-edge fusion model.*sage-edge export",
         "onnx"),
    case("fuse-broken-pt", "fuse --demo -o {out}/f.png --model {broken_pt}", r"corrupt or truncated PyTorch", "torch"),
    case("fuse-text-as-pt", "fuse --demo -o {out}/f.png --model {text_pt}", r"not a PyTorch checkpoint", "torch"),
    case("fuse-unknown-model-type", "fuse --demo -o {out}/f.png --model {afile}", r"unknown model type '\.txt'"),
    case("fuse-engine-on-onnxruntime", "fuse --demo -o {out}/f.png --model {engine} --backend onnxruntime",
         r"cannot run \.engine models"),
    case("fuse-no-inputs", "fuse -o {out}/f.png", r"sage-edge fuse --demo -o fused.png"),
    case("fuse-pt-without-torch", "fuse --demo -o {out}/f.png --model {text_pt}", r"need torch.*pip install",
         base_install=True),
    # export
    case("export-unwritable-folder", "export -o {ro}/m.onnx", UNWRITABLE, "ro"),
    case("export-not-onnx", "export -o {out}/m.txt", r"must end in \.onnx"),
    case("export-output-is-a-directory", "export -o {dir_onnx}", r"is a directory"),
    case("export-broken-safetensors", "export --model {broken_st} -o {out}/m.onnx", r"not a readable safetensors",
         "torch", "onnx", "safetensors"),
    case("export-without-torch", "export -o {out}/m.onnx", r"pip install 'sage-edge\[export\]'", base_install=True),
    # quantize
    case("quantize-missing-model", "quantize {out}/none.onnx --calib {data} -o {out}/q.onnx", r"no such model file"),
    case("quantize-text-as-onnx", "quantize {text_onnx} --calib {data} -o {out}/q.onnx", r"not a readable ONNX model",
         "onnx", "modelopt"),
    case("quantize-unwritable-folder", "quantize {model} --calib {data} -o {ro}/q.onnx", UNWRITABLE, "ro"),
    case("quantize-height-first", "quantize {model} --calib {data} -o {out}/q.onnx --shape 480x640",
         r"WIDTHxHEIGHT.*write 640x480"),
    case("quantize-without-modelopt", "quantize {model} --calib {data} -o {out}/q.onnx",
         r"pip install 'sage-edge\[quantize\]'", base_install=True),
    # check-precision
    case("check-precision-no-calib", "check-precision {model} --calib {out}/none", r"no such directory"),
    case("check-precision-text-as-onnx", "check-precision {text_onnx} --calib {data}", r"not a readable ONNX", "onnx"),
    case("check-precision-save-unwritable", "check-precision {model} --calib {data} --save-int8 {ro}/q.onnx",
         UNWRITABLE, "ro"),
    case("check-precision-bad-size", "check-precision {model} --calib {data} --eval-shape 640by480",
         r"use WIDTHxHEIGHT"),
    case("check-precision-without-onnx", "check-precision {model} --calib {data}",
         r"pip install 'sage-edge\[quantize\]'", base_install=True),
    # check-trt
    case("check-trt-missing-model", "check-trt {out}/none.onnx", r"no such ONNX file"),
    case("check-trt-text-as-onnx", "check-trt {text_onnx}", r"not a readable ONNX model"),
    case("check-trt-unknown-version", "check-trt {model} --trt 9", r"TensorRT 8\.5, 8\.6, 10, 11"),
    # build-engine
    case("build-engine-missing-model", "build-engine {out}/none.onnx", r"no such ONNX file"),
    case("build-engine-weights", "build-engine {text_pt}", r"takes an ONNX model; export weights first"),
    case("build-engine-bad-output", "build-engine {model} -o {out}/m.bin", r"must end in \.engine"),
    case("build-engine-height-first", "build-engine {model} --opt-shape 720x1280", r"write 1280x720"),
    # verify
    case("verify-no-data", "verify {model} --data {out}/none", r"no such directory"),
    case("verify-text-reference", "verify {model} --data {data} --reference {text_onnx}", r"not a readable ONNX",
         "onnx"),
    case("verify-truncated-pair", "verify {model} --data {bad_data} --reference {model} --no-metrics",
         r"truncated PNG"),
    # metrics
    case("metrics-swapped", "metrics {pair_vis} {grey_ir} {pair_vis}", r"look swapped"),
    case("metrics-truncated-fused", "metrics {pair_ir} {pair_vis} {truncated}", r"truncated PNG"),
    case("metrics-size-mismatch", "metrics {pair_ir} {pair_vis} {big_vis}", r"sizes differ"),
    # eval
    case("eval-out-unwritable", "eval --data {data} --baselines --no-charts --out {ro}/report", UNWRITABLE, "ro"),
    case("eval-out-full-disk", "eval --data {data} --baselines --no-charts --out {full}/report", NO_SPACE, "full"),
    case("eval-out-is-a-file", "eval --data {data} --baselines --out {afile}", r"is a file; give a folder"),
    case("eval-swapped-folders", "eval --data {swapped_data} --baselines --no-charts --out {out}/r", r"look swapped"),
    case("eval-truncated-pair", "eval --data {bad_data} --baselines --no-charts --out {out}/r", r"truncated PNG"),
    # bench
    case("bench-json-unwritable", "bench --iterations 1 --warmup 0 --frames 1 --json {ro}/b.json", UNWRITABLE, "ro"),
    case("bench-height-first", "bench --resolution 480x640", r"write 640x480"),
    case("bench-no-such-data", "bench --data {out}/none --iterations 1", r"no such directory"),
    case("bench-missing-model", "bench --model {out}/none.onnx", r"no such model file"),
    case("bench-plot-without-matplotlib", "bench --plot {out}/b.png --iterations 1", r"needs matplotlib",
         base_install=True),
    # run
    case("run-video-unwritable", "run --ir file://{seq}/ir --vis file://{seq}/vis -q -o file://{ro}/out.avi",
         UNWRITABLE, "ro"),
    case("run-truncated-frame", "run --ir file://{bad_seq}/ir --vis file://{bad_seq}/vis -q -o file://{out}/f/",
         r"truncated PNG"),
    case("run-swapped", "run --ir file://{seq}/vis --vis file://{seq}/grey -q -o file://{out}/f/",
         r"look swapped.*swap --ir and --vis"),
    case("run-weights-model", "run --ir file://{seq}/ir --vis file://{seq}/vis --model {text_pt} -q",
         r"export the weights first.*-o"),
    case("run-zero-fps", "run --ir file://{seq}/ir --vis file://{seq}/vis --ir-fps 0", r"--ir-fps.*see `sage-edge run -h`"),
    # calibrate
    case("calibrate-unwritable", "calibrate --ir {pair_ir} --vis {pair_vis} --points {points} -o {ro}/H.json",
         UNWRITABLE, "ro"),
    case("calibrate-three-points", "calibrate --ir {pair_ir} --vis {pair_vis} --points {three_points} -o {out}/H.json",
         r"at least 4 matched points"),
    case("calibrate-swapped", "calibrate --ir {pair_vis} --vis {grey_ir} --points {points} -o {out}/H.json",
         r"look swapped"),
    case("calibrate-truncated", "calibrate --ir {truncated} --vis {pair_vis} --points {points} -o {out}/H.json",
         r"truncated PNG"),
    # fetch
    case("fetch-offline", "fetch sage-official --url http://127.0.0.1:9/checkpoints.pt",
         r"offline\?.*--url file://", SAGE_EDGE_CACHE="{out}/cache"),
    case("fetch-cache-unwritable", "fetch sage-official --url file://{afile}", r"set SAGE_EDGE_CACHE", "ro",
         SAGE_EDGE_CACHE="{ro}/cache"),
    case("fetch-wrong-file", "fetch sage-official --url file://{afile}", r"is corrupt: sha256.*nothing was cached",
         SAGE_EDGE_CACHE="{out}/cache"),
    case("fetch-unknown", "fetch sage-huge", r"unknown downloadable model"),
    # train
    case("train-source-unwritable", "train source --data {data} --out {ro}/run", r"read-only|permission", "ro"),
    case("train-source-no-data", "train source --data {out}/none --out {out}/run", r"does not exist"),
    case("train-source-without-torch", "train source --data {data} --out {out}/run", r"needs PyTorch.*\[train\]",
         base_install=True),
    case("train-masks-without-torch", "train masks --data {data} --sam-checkpoint x.pth",
         r"needs PyTorch.*\[train\]", base_install=True),
    case("train-distill-without-torch", "train distill --data {data} --out {out}/run", r"needs PyTorch.*\[train\]",
         base_install=True),
    # doctor
    case("doctor-unknown-option", "doctor --jsn", r"Did you mean '--json'.*see `sage-edge doctor -h`"),
]


# --------------------------------------------------------------------------------------------- the world


def _mount_tmpfs(target: Path, options: str) -> bool:
    if os.geteuid() != 0:
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)], capture_output=True)
    return done.returncode == 0


def _unmount(target: Path) -> None:
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Inputs, broken files, and output folders that refuse writes; placeholders for ``CASES``."""
    from sage_edge.samples import demo_pair

    root = tmp_path_factory.mktemp("bad_input")
    demo_ir, demo_vis = demo_pair()
    ir, vis = cv2.imread(str(demo_ir), cv2.IMREAD_UNCHANGED), cv2.imread(str(demo_vis))
    crops = [(200, 340), (180, 400), (300, 100)]  # small 64x48 crops of the demo pair: fast to fuse
    w = {"root": root, "model": REPO / "sage_edge" / "assets" / "default.onnx"}

    def dataset(name: str, ir_of, vis_of) -> Path:
        for sub in ("ir", "vis"):
            (root / name / sub).mkdir(parents=True)
        for i, (y, x) in enumerate(crops):
            cv2.imwrite(str(root / name / "ir" / f"p{i}.png"), ir_of(ir[y:y + 48, x:x + 64], vis[y:y + 48, x:x + 64]))
            cv2.imwrite(str(root / name / "vis" / f"p{i}.png"), vis_of(ir[y:y + 48, x:x + 64], vis[y:y + 48, x:x + 64]))
        return root / name

    w["data"] = dataset("data", lambda i, v: i, lambda i, v: v)
    w["swapped_data"] = dataset("swapped", lambda i, v: v, lambda i, v: i)
    w["bad_data"] = dataset("bad", lambda i, v: i, lambda i, v: v)
    w["pair_ir"], w["pair_vis"] = w["data"] / "ir" / "p0.png", w["data"] / "vis" / "p0.png"
    w["grey_ir"] = w["pair_ir"]  # one channel: grey, as a thermal image is
    for name, image in (("tiny_ir", ir[:10, :12]), ("tiny_vis", vis[:10, :12])):  # smaller than the border padding
        w[name] = root / f"{name}.png"
        cv2.imwrite(str(w[name]), image)
    png = w["pair_ir"].read_bytes()
    w["truncated"] = root / "truncated.png"
    w["truncated"].write_bytes(png[: len(png) // 2])
    (w["bad_data"] / "ir" / "p1.png").write_bytes(png[: len(png) // 2])
    w["big_vis"] = root / "big.png"
    cv2.imwrite(str(w["big_vis"]), np.zeros((60, 80, 3), np.uint8))
    # image sequences for run: colour visible, grey IR, and a truncated first frame
    for name, bad in (("seq", False), ("bad_seq", True)):
        for sub in ("ir", "vis", "grey"):
            (root / name / sub).mkdir(parents=True)
        for i, (y, x) in enumerate(crops[:2]):
            cv2.imwrite(str(root / name / "ir" / f"{i:03d}.png"), ir[y:y + 48, x:x + 64])
            cv2.imwrite(str(root / name / "vis" / f"{i:03d}.png"), vis[y:y + 48, x:x + 64])
            cv2.imwrite(str(root / name / "grey" / f"{i:03d}.png"), ir[y:y + 48, x:x + 64])
        if bad:
            (root / name / "ir" / "000.png").write_bytes(png[: len(png) // 2])
        w[name] = root / name
    # models of the wrong kind
    w["text_onnx"] = root / "readme.onnx"
    w["text_onnx"].write_text("this is a README, not a model\n")
    w["text_pt"] = root / "notes.pt"
    w["text_pt"].write_text("hello\n")
    w["broken_pt"] = root / "broken.pt"
    w["broken_st"] = root / "broken.safetensors"
    w["broken_st"].write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    w["engine"] = root / "model.engine"
    w["engine"].write_bytes(b"\x00" * 64)
    w["afile"] = root / "afile.txt"
    w["afile"].write_text("a regular file\n")
    w["dir_onnx"] = root / "adir.onnx"
    w["dir_onnx"].mkdir()
    try:
        import torch

        torch.save({"w": torch.zeros(3)}, w["broken_pt"])
        w["broken_pt"].write_bytes(w["broken_pt"].read_bytes()[:-40])  # a zip without its central directory
    except ImportError:
        pass
    try:
        import onnx
        from onnx import TensorProto, helper

        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
        w["relu_onnx"] = root / "relu.onnx"
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(w["relu_onnx"]))
    except ImportError:
        w["relu_onnx"] = root / "relu-needs-onnx.onnx"
    w["points"] = root / "points.txt"
    w["points"].write_text("\n".join(f"{x} {y} {x + 1} {y + 2}" for x, y in ((5, 5), (55, 6), (50, 40), (8, 42), (30, 20))))
    w["three_points"] = root / "three.txt"
    w["three_points"].write_text("1 2 3 4\n5 6 7 8\n9 9 9 9\n")

    # a folder that refuses writes: read-only tmpfs for root, chmod 0555 for anyone else
    ro, full = root / "ro", root / "full"
    ro.mkdir()
    full.mkdir()
    mounted = []
    try:
        if os.geteuid() != 0:
            ro.chmod(0o555)
            w["ro"] = ro
        elif _mount_tmpfs(ro, "ro,size=64k"):
            mounted.append(ro)
            w["ro"] = ro
        if _mount_tmpfs(full, "size=16k"):
            mounted.append(full)
            fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
            try:  # fill it to the last byte
                while os.write(fd, b"\0" * 512):
                    pass
            except OSError:
                pass
            finally:
                os.close(fd)
            w["full"] = full
        yield w
    finally:
        for target in mounted:
            _unmount(target)
        if os.geteuid() != 0:
            ro.chmod(0o755)


def _fill(case: Case, world: dict, out: Path) -> tuple[list[str], dict[str, str]]:
    values = {k: str(v) for k, v in world.items()}
    values["out"] = str(out)
    args = [a.format(**values) for a in case.args]
    env = {k: v.format(**values) for k, v in case.env.items()}
    return args, env


def _skip_reason(case: Case, world: dict) -> str | None:
    for need in case.needs:
        if need == "ro" and "ro" not in world:
            return "root without permission to mount a read-only tmpfs: no folder that refuses root's writes"
        if need == "full" and "full" not in world:
            return "a full disk needs a small tmpfs, which only root can mount here"
        if need not in ("ro", "full"):
            try:
                __import__(need)
            except ImportError:
                return f"needs {need}"
    return None


def _snapshot(*folders: Path) -> dict[str, list[str]]:
    return {str(f): sorted(str(p.relative_to(f)) for p in f.rglob("*")) for f in folders if f.is_dir()}


def assert_one_line_error(code: int, stderr: str, expect: str, what: str) -> None:
    assert code != 0, f"{what}: exit status 0\n{stderr}"
    assert TRACEBACK not in stderr, f"{what}: traceback\n{stderr}"
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"{what}: not one error line at the end\n{stderr}"
    others = [line for line in lines[:-1] if not ALLOWED_OTHER_LINE.search(line)]
    assert not others, f"{what}: other lines on stderr: {others}"
    assert re.search(expect, errors[0]), f"{what}: {errors[0]!r} does not match {expect!r}"


# --------------------------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("case", [c for c in CASES if not c.base_install], ids=lambda c: c.id)
def test_bad_input_is_one_line(case, world, tmp_path, monkeypatch):
    reason = _skip_reason(case, world)
    if reason:
        pytest.skip(reason)
    out = tmp_path / "out"
    out.mkdir()
    args, env = _fill(case, world, out)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    watched = [out] + [world[k] for k in ("ro", "full") if k in world]
    before = _snapshot(*watched)
    result = CliRunner().invoke(main, args, prog_name="sage-edge")
    assert result.exception is None or isinstance(result.exception, SystemExit), \
        f"{case.id}: uncaught {result.exception!r}\n{result.stderr}"
    assert_one_line_error(result.exit_code, result.stderr, case.expect, case.id)
    assert _snapshot(*watched) == before, f"{case.id}: left files behind"


# A base install: what `pip install .` gives (no torch, onnx, ModelOpt, matplotlib, ...), simulated by blocking
# the imports of the optional extras in a fresh interpreter. Every base-install row runs in that one process.
BLOCKED = ("torch", "torchvision", "onnx", "onnxscript", "onnxslim", "safetensors", "modelopt", "matplotlib",
           "segment_anything", "polygraphy", "onnx_graphsurgeon")
BASE_INSTALL_RUNNER = """
import json, sys
for name in {blocked!r}:
    sys.modules[name] = None
from click.testing import CliRunner
from sage_edge.cli import main
results = {{}}
for case_id, args in json.loads(sys.argv[1]).items():
    r = CliRunner().invoke(main, args, prog_name="sage-edge")
    uncaught = None if r.exception is None or isinstance(r.exception, SystemExit) else repr(r.exception)
    results[case_id] = [r.exit_code, r.stderr, uncaught]
print(json.dumps(results))
"""


def test_base_install_without_extras_is_one_line(world, tmp_path):
    """Missing extras (torch, onnx, ModelOpt, matplotlib) name the pip extra to install, in one line."""
    cases = [c for c in CASES if c.base_install]
    out = tmp_path / "out"
    out.mkdir()
    args = {c.id: _fill(c, world, out)[0] for c in cases}
    done = subprocess.run([sys.executable, "-c", BASE_INSTALL_RUNNER.format(blocked=BLOCKED), json.dumps(args)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout.strip().splitlines()[-1])
    for c in cases:
        code, stderr, uncaught = results[c.id]
        assert uncaught is None, f"{c.id}: uncaught {uncaught}\n{stderr}"
        assert_one_line_error(code, stderr, c.expect, c.id)
    assert list(out.iterdir()) == []


def test_closed_stdout_is_not_a_traceback(tmp_path):
    """`sage-edge doctor | head -1`: a reader that leaves early ends the command quietly, as Unix tools do."""
    proc = subprocess.Popen([sys.executable, "-m", "sage_edge.cli", "doctor"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path)
    proc.stdout.close()
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=60) != 0 or stderr == ""
    assert TRACEBACK not in stderr and "BrokenPipeError" not in stderr, stderr


def test_table_covers_every_command_and_forty_cases():
    from sage_edge.cli import COMMANDS

    covered = {c.args[0] for c in CASES} | {"doctor"}
    assert covered >= set(COMMANDS), set(COMMANDS) - covered
    assert len(CASES) >= 40
    assert len({c.id for c in CASES}) == len(CASES)
