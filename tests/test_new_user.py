"""A new user's first hour (issue #12): the demo pair that ships, README's first command, suggested commands
that paste, swapped and unpaired inputs, a directory `fuse` past a corrupt pair, one size convention, and
`run` (video frame rate, --ir-fps, status line, the summary's note). None of it needs ../shared."""
from __future__ import annotations

import ast
import configparser
import hashlib
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import click
import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from sage_edge.cli import main
from sage_edge.errors import SageEdgeError

REPO = Path(__file__).resolve().parents[1]


def invoke(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args], prog_name="sage-edge")


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


# --------------------------------------------------------------------------------------------- demo pair


def test_demo_pair_is_the_unmodified_msrs_pair_with_its_licence(demo_pair):
    ir, vis = demo_pair
    notice = (ir.parent.parent / "NOTICE.md").read_text()
    # byte-identical to Linfeng-Tang/VIF-Benchmark @ 23f2e51 (the blob ids NOTICE.md gives)
    assert git_blob_id(ir.read_bytes()).startswith("51776723e410") and "51776723e410" in notice
    assert git_blob_id(vis.read_bytes()).startswith("e2e574d55537") and "e2e574d55537" in notice
    assert "MIT License" in notice and "Copyright (c) 2023 Linfeng Tang" in notice
    assert "23f2e51fc1b084310d998999222ce02dc364b6eb" in notice


def test_demo_files_are_package_data():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    patterns = [p.strip() for p in config["options.package_data"]["sage_edge"].split(",")]
    shipped = {p for pattern in patterns for p in (REPO / "sage_edge").glob(pattern)}
    demo = {p for p in (REPO / "sage_edge" / "assets" / "demo").rglob("*") if p.is_file()}
    assert demo and demo <= shipped, demo - shipped


def test_fuse_demo_shows_the_pedestrians_only_the_infrared_sees(tmp_path, demo_pair):
    out = tmp_path / "fused.png"
    result = invoke("fuse", "--demo", "-o", out)
    assert result.exit_code == 0, result.stderr
    assert f"wrote {out}" in result.stdout and "NOTICE.md" in result.stdout
    ir = cv2.imread(str(demo_pair[0]), cv2.IMREAD_GRAYSCALE).astype(float)
    vis = cv2.cvtColor(cv2.imread(str(demo_pair[1])), cv2.COLOR_BGR2GRAY).astype(float)
    fused = cv2.imread(str(out))
    assert fused.shape == (480, 640, 3)
    fused = cv2.cvtColor(fused, cv2.COLOR_BGR2GRAY).astype(float)
    hot = ir > 200  # the three pedestrians (and nothing else in this night scene)
    assert 300 < hot.sum() < 5000
    # Fusion keeps a good part of their thermal contrast, which the dark visible image does not have.
    gained = (fused[hot].mean() - vis[hot].mean()) / (ir[hot].mean() - vis[hot].mean())
    assert gained > 0.4, gained
    assert invoke("fuse", demo_pair[0], "--demo", "-o", out).exit_code == 1  # one or the other


def test_readme_first_command_is_the_demo_and_second_the_suite():
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```bash\n(.*?)```", readme, re.S).group(1).strip().splitlines()
    assert block == ["pip install . && sage-edge fuse --demo -o fused.png", "bash scripts/test.sh"]


def test_skip_reason_says_where_the_shared_data_comes_from():
    import conftest

    reason = conftest.SHARED_DATA_SKIP_REASON
    assert "SOURCES.md" in reason and "SAGE_EDGE_SHARED_DATA" in reason
    assert "Linfeng-Tang/VIF-Benchmark" in reason and "RollingPlain/SAGE_IVIF" in reason


def test_fetch_offline_names_url_and_cache(isolated_cache):
    result = invoke("fetch", "sage-official", "--url", "http://127.0.0.1:9/checkpoints.pt")
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert "offline?" in line and "--url file://" in line and str(isolated_cache / "models") in line


# --------------------------------------------------------------------------------------------- pairs


@pytest.fixture()
def small_dataset(tmp_path, demo_pair):
    """data/{ir,vis}/p0..p2.png: 64x48 crops of the demo pair."""
    ir, vis = cv2.imread(str(demo_pair[0]), cv2.IMREAD_UNCHANGED), cv2.imread(str(demo_pair[1]))
    for sub in ("ir", "vis"):
        (tmp_path / "data" / sub).mkdir(parents=True)
    for i, (y, x) in enumerate([(200, 340), (180, 400), (300, 100)]):
        cv2.imwrite(str(tmp_path / "data" / "ir" / f"p{i}.png"), ir[y:y + 48, x:x + 64])
        cv2.imwrite(str(tmp_path / "data" / "vis" / f"p{i}.png"), vis[y:y + 48, x:x + 64])
    return tmp_path / "data"


def test_directory_fuse_continues_past_a_corrupt_pair_and_fails_at_the_end(tmp_path, small_dataset):
    good = (small_dataset / "ir" / "p1.png").read_bytes()
    (small_dataset / "ir" / "p1.png").write_bytes(good[: len(good) // 2])
    out = tmp_path / "fused"
    result = invoke("fuse", small_dataset, "-o", out)
    assert result.exit_code == 1 and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["p0.png", "p2.png"]  # the others are fused
    lines = [line for line in result.stderr.splitlines() if line.strip() and "%|" not in line]
    assert lines[0].startswith("skipped p1: ") and "truncated PNG" in lines[0]
    assert lines[-1].startswith("error: 1 of 3 pairs could not be fused (first: p1: ")
    assert "the other 2 are in" in lines[-1]


def test_unpaired_files_are_reported_by_fuse_metrics_and_eval(tmp_path, small_dataset):
    cv2.imwrite(str(small_dataset / "ir" / "lonely_ir.png"), np.zeros((48, 64), np.uint8))
    cv2.imwrite(str(small_dataset / "vis" / "lonely_vis.png"), np.zeros((48, 64, 3), np.uint8))
    out = tmp_path / "fused"
    result = invoke("fuse", small_dataset, "-o", out)
    assert result.exit_code == 0, result.stderr
    note = next(line for line in result.stderr.splitlines() if line.startswith("note: "))
    assert "2 file(s) have no partner" in note and "ir/lonely_ir.png" in note and "vis/lonely_vis.png" in note
    assert len(list(out.iterdir())) == 3
    result = invoke("metrics", small_dataset / "ir", small_dataset / "vis", out, "--metrics", "EN", "--json")
    assert result.exit_code == 0, result.stderr
    assert "lonely_ir.png" in result.stderr and '"EN"' in result.stdout  # stdout stays pure JSON
    result = invoke("eval", "--data", small_dataset, "--baselines", "--no-charts", "--grid", "0",
                    "--metrics", "EN", "--out", tmp_path / "report")
    assert result.exit_code == 0, result.stderr
    assert "lonely_vis.png" in result.stderr


def test_swapped_inputs_are_refused(tmp_path, small_dataset):
    ir, vis = small_dataset / "ir" / "p0.png", small_dataset / "vis" / "p0.png"
    result = invoke("fuse", vis, ir, "-o", tmp_path / "f.png")
    assert result.exit_code == 1 and "look swapped" in result.stderr and not (tmp_path / "f.png").exists()
    assert invoke("fuse", ir, vis, "-o", tmp_path / "f.png").exit_code == 0
    # a grey visible image next to a grey IR (TNO) is fine: only colour IR + grey visible is refused
    assert invoke("fuse", ir, ir, "-o", tmp_path / "g.png").exit_code == 0


# --------------------------------------------------------------------------------------------- suggestions


def _command_pattern() -> re.Pattern:
    from sage_edge.cli import COMMANDS

    names = "|".join(sorted(map(re.escape, COMMANDS), key=len, reverse=True))
    return re.compile(rf"[`'](sage-edge (?:{names})(?=[\s`'])[^`']*)[`']")  # quoted, as messages quote them


COMMAND = _command_pattern()


def _literal(node: ast.AST) -> str | None:
    """A string constant or f-string as text, with each {expression} kept as written."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(v.value if isinstance(v, ast.Constant) else "{" + ast.unparse(v.value) + "}"
                       for v in node.values)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _literal(node.left), _literal(node.right)
        return None if left is None or right is None else left + right
    return None


def suggested_commands() -> list[tuple[str, str]]:
    """(where, command) for every quoted `sage-edge ...` in a string of the package (docstrings excepted;
    the unquoted hints, engine_sidecar.rebuild_hint and benchmarking.build_engine_command, are generated
    by the test)."""
    found = []
    for folder in ("sage_edge", "runtime", "export", "train"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                          if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                          and n.body and isinstance(n.body[0], ast.Expr)}
            for node in ast.walk(tree):
                text = None if id(node) in docstrings else _literal(node)
                for match in COMMAND.finditer(text or ""):
                    found.append((f"{path.relative_to(REPO)}:{node.lineno}", match.group(1).strip().rstrip(".,:")))
    # the --help examples, which users paste too
    for name in main.list_commands(None):
        for line in (main.get_command(None, name).help or "").splitlines():
            if line.strip().startswith("sage-edge "):
                found.append((f"sage-edge {name} --help", line.strip()))
    return sorted(set(found))


def parse_command_line(command: str) -> click.Context:
    """Parse ``command`` with the real click commands (options, arguments, types, required ones)."""
    words = shlex.split(command)
    assert words[0] == "sage-edge"
    group, rest = main, words[1:]
    while isinstance(group, click.Group):
        name, rest = rest[0], rest[1:]
        command_object = group.get_command(None, name)
        assert command_object is not None, f"no command '{name}'"
        if not isinstance(command_object, click.Group):
            return command_object.make_context(name, rest)
        group = command_object
    raise AssertionError(command)


SAMPLE_VALUES = {"flag": "--max-shape", "w": "640", "h": "480", "border_pad": "16", "wanted": "16"}  # runtime/tensorrt_backend.py's profile hint


def test_every_suggested_command_parses(tmp_path, monkeypatch):
    """Each command line the code suggests parses with the real command; a bare `sage-edge NAME` must exist."""
    from sage_edge.benchmarking import build_engine_command
    from sage_edge.export.engine_builder import BuildOptions
    from sage_edge.runtime.engine_sidecar import rebuild_hint
    from sage_edge.sizes import parse_size

    monkeypatch.chdir(tmp_path)
    (tmp_path / "x").mkdir()  # what a {placeholder} becomes: an existing folder 'x', files 'x.onnx', 'x.pt'
    for name in ("x.onnx", "x.pt", "MODEL.onnx"):
        (tmp_path / name).write_text("")
    found = suggested_commands()
    assert len(found) >= 15, found
    generated = [("build_engine_command", build_engine_command(Path("x.onnx"), p)) for p in ("fp32", "fp16", "int8")]
    generated.append(("build_engine_command", build_engine_command(Path("x.pt"), "fp16")))
    options = BuildOptions(onnx=Path("x.onnx"), fp16=True, min_shape=(120, 160), opt_shape=(480, 640),
                           max_shape=(720, 1280))
    hint = rebuild_hint({"onnx": {"path": "x.onnx"}, "command_flags": options.command_flags()}, "x.engine")
    generated.append(("rebuild_hint", hint.split(": ", 1)[1]))
    checked = 0
    for where, template in found + generated:
        # an {expression} becomes a sample value: the flag or number it stands for, else 'x'
        filled = re.sub(r"\{([^{}]*)\}", lambda m: SAMPLE_VALUES.get(m.group(1), "x"), template)
        for command in filled.split("&&"):
            words = shlex.split(command)
            if len(words) <= 2 or (words[1] == "train" and len(words) == 3):  # a reference to a command
                assert main.get_command(None, words[1]) is not None, (where, command)
                continue
            try:
                ctx = parse_command_line(command)
            except click.ClickException as exc:
                raise AssertionError(f"{where}: `{command}` does not parse: {exc.format_message()}") from None
            for key, value in ctx.params.items():  # size flags must also pass the size convention
                if key.endswith("_shape") and value:
                    parse_size(value, key)
            checked += 1
    assert checked >= 8


def test_bench_suggests_a_build_engine_line_that_parses():
    from sage_edge.benchmarking import Cell, Inputs, ModelResolver, Skip

    resolver = ModelResolver(Inputs([], "none", []))
    with pytest.raises(Skip) as skip:
        resolver.resolve(Cell("default", "tensorrt", "fp16", 64, 48))
    command = re.search(r"`(sage-edge build-engine [^`]*)`", str(skip.value)).group(1)
    ctx = parse_command_line(command)
    assert ctx.params["fp16"] and ctx.params["model"].suffix == ".onnx"


# --------------------------------------------------------------------------------------------- sizes


def test_one_size_convention():
    from sage_edge.export.engine_builder import parse_hw
    from sage_edge.export.quantize import parse_shape
    from sage_edge.runtime.pipeline import parse_size as vis_size
    from sage_edge.sizes import parse_size, parse_size_hw

    assert parse_size("640x480") == (640, 480) == vis_size("640x480")
    assert parse_size_hw("640x480") == (480, 640) == parse_hw("640x480", "--opt-shape") == parse_shape("640x480")
    assert parse_size("600x900") == (600, 900)  # a portrait size that is no camera size turned: accepted
    for text, flag in (("480x640", "--shape"), ("1080x1920", "--max-shape"), ("512x640", "--resolution")):
        with pytest.raises(SageEdgeError, match=rf"{flag} '{text}': sizes are WIDTHxHEIGHT"):
            parse_size(text, flag)
    with pytest.raises(SageEdgeError, match="use WIDTHxHEIGHT"):
        parse_size("640,480", "--vis-size")
    for command in ("quantize", "check-precision", "build-engine", "verify", "bench", "run"):
        help_text = invoke(command, "--help").stdout
        assert "WIDTHxHEIGHT" in help_text and "HxW" not in help_text, command


def test_export_reports_its_static_size_width_first(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    result = invoke("export", "-o", tmp_path / "m.onnx", "--height", "48", "--width", "64", "--no-simplify")
    assert result.exit_code == 0, result.stderr
    assert "static 64x48 (WIDTHxHEIGHT)" in result.stdout


# --------------------------------------------------------------------------------------------- ModelOpt


def test_modelopt_info_is_silenced_while_it_runs(capsys):
    import logging

    from sage_edge.export.quantize import _quiet_logs

    logger = logging.getLogger("modelopt.onnx.autocast.test")
    handler = logging.StreamHandler()  # as ModelOpt sets one up, on every import
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with _quiet_logs():
            logger.info("Skipping node /Cast: DisabledNodeNameRegexRule")
            logger.warning("Shared constants were detected")
            logger.error("a real error")
        logger.info("after")
    finally:
        logger.removeHandler(handler)
    err = capsys.readouterr().err
    assert "Skipping node" not in err and "Shared constants" not in err
    assert "a real error" in err and "after" in err


# --------------------------------------------------------------------------------------------- run


def _write_video(path: Path, frames: list[np.ndarray], fps: float) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0]))
    assert writer.isOpened()
    for frame in frames:
        writer.write(frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR))
    writer.release()


def _video_fps_and_frames(path: Path) -> tuple[float, int]:
    cap = cv2.VideoCapture(str(path))
    fps, count = cap.get(cv2.CAP_PROP_FPS), 0
    while cap.read()[0]:
        count += 1
    cap.release()
    return fps, count


@pytest.fixture()
def nine_fps_videos(tmp_path, demo_pair):
    ir, vis = cv2.imread(str(demo_pair[0]), cv2.IMREAD_GRAYSCALE), cv2.imread(str(demo_pair[1]))
    frames = [(ir[y:y + 48, 300:364], vis[y:y + 48, 300:364]) for y in range(150, 150 + 6 * 8, 8)]
    _write_video(tmp_path / "ir.mp4", [f[0] for f in frames], 9.0)
    _write_video(tmp_path / "vis.mp4", [f[1] for f in frames], 9.0)
    return tmp_path / "ir.mp4", tmp_path / "vis.mp4"


def test_run_records_at_the_rate_of_its_video_sources(tmp_path, nine_fps_videos):
    ir, vis = nine_fps_videos
    result = invoke("run", "--ir", f"file://{ir}", "--vis", f"file://{vis}", "-q",
                    "-o", f"file://{tmp_path}/out.mp4", "-o", f"file://{tmp_path}/out.avi")
    assert result.exit_code == 0, result.stderr
    frames = int(re.search(r"^frames (\d+) in", result.stdout, re.M).group(1))
    assert frames == 6
    for name in ("out.mp4", "out.avi"):
        fps, count = _video_fps_and_frames(tmp_path / name)
        assert fps == pytest.approx(9.0, abs=0.01) and count == frames, (name, fps, count)
    assert "file sources are read as fast as the pipeline takes them" in result.stdout
    assert result.stderr == ""  # -q: no status lines


def test_run_image_sequences_take_their_rates_from_ir_fps_and_vis_fps(tmp_path, small_dataset):
    result = invoke("run", "--ir", f"file://{small_dataset}/ir", "--vis", f"file://{small_dataset}/vis", "-q",
                    "--ir-fps", "9", "--vis-fps", "9", "-o", f"file://{tmp_path}/seq.avi")
    assert result.exit_code == 0, result.stderr
    assert _video_fps_and_frames(tmp_path / "seq.avi") == (pytest.approx(9.0, abs=0.01), 3)
    from sage_edge.runtime.sources import open_source

    assert open_source(f"file://{small_dataset}/ir", fps=9.0).period == pytest.approx(1 / 9)


def test_run_prints_a_status_line_while_it_works(demo_pair):
    from sage_edge.runtime.backend import Backend, TensorSpec
    from sage_edge.runtime.pipeline import Pipeline
    from sage_edge.runtime.sources import ArraySource

    class SlowEcho(Backend):
        inputs = [TensorSpec("ir", np.dtype(np.uint8), (1, "h", "w", 1)),
                  TensorSpec("vis", np.dtype(np.uint8), (1, "h", "w", 3))]
        outputs = [TensorSpec("fused", np.dtype(np.uint8), (1, "h", "w", 3)),
                   TensorSpec("fused_y", np.dtype(np.uint8), (1, "h", "w", 1))]

        def infer(self, feed):
            time.sleep(0.02)
            return {"fused": np.repeat(feed["ir"], 3, axis=3), "fused_y": feed["ir"]}

    ir = np.full((24, 32), 90, np.uint8)
    vis = np.dstack([np.full((24, 32), v, np.uint8) for v in (10, 60, 120)])
    lines: list[str] = []
    summary = Pipeline(ArraySource([ir] * 30), ArraySource([vis] * 30), backend_factory=SlowEcho,
                       log=lines.append, status_interval_s=0.2).run()
    status = [line for line in lines if line.startswith("run: ")]
    assert summary.frames == 30 and 1 <= len(status) <= 6, lines
    assert re.match(r"run: \d+ frames, [\d.]+ FPS, latency p50 [\d.]+ ms, pairing skew p50 [\d.]+ ms, "
                    r"drops ir/vis/pairs/output \d+/\d+/\d+/\d+$", status[-1]), status[-1]
    assert not summary.live and "queue" in summary.format()
    silent: list[str] = []
    Pipeline(ArraySource([ir] * 5), ArraySource([vis] * 5), backend_factory=SlowEcho, log=silent.append).run()
    assert not [line for line in silent if line.startswith("run: ")]  # no interval (-q): no status lines


def test_a_clone_without_shared_data_is_told_why_tests_skip(tmp_path):
    """README's test command is pytest -q, which hides skip reasons; the summary still says why, in one line."""
    missing = tmp_path / "no-shared-data"
    env = {**os.environ, "SAGE_EDGE_SHARED_DATA": str(missing)}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_zoo.py"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:]
    said = re.search(r"^(\d+) tests? skipped: no shared test data at (.+); set SAGE_EDGE_SHARED_DATA",
                     done.stdout, re.M)
    assert said and said.group(2) == str(missing), done.stdout[-2000:]
    assert 1 <= int(said.group(1)) <= int(re.search(r"(\d+) skipped", done.stdout).group(1))
