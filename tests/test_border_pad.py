"""Border padding inside the graph: on by default, --border-pad 0 turns it off on every backend and command."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sage_edge.errors import SageEdgeError
from sage_edge.imageio import read_ir, read_visible
from sage_edge.io_contract import DEFAULT_BORDER_PAD
from sage_edge.runtime import engine_sidecar
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.zoo import resolve_model

# (dataset, stem) pairs whose borders are judged: one per dataset, and the night pair.
BORDER_PAIRS = [("TNO", "19"), ("RoadScene", "FLIR_04269"), ("MSRS", "00858N"), ("M3FD", "00003"), ("VIFB", "walking")]


def border_steps(image: np.ndarray) -> np.ndarray:
    """Mean |difference| between each of the two outermost lines and its inner neighbour, per side:
    8 values (rows 0|1, H-1|H-2, columns 0|1, W-1|W-2, then rows 1|2, H-2|H-3, columns 1|2, W-2|W-3)."""
    x = image.astype(np.float64)
    steps = []
    for k in (0, 1):
        steps += [np.abs(x[k] - x[k + 1]).mean(), np.abs(x[-1 - k] - x[-2 - k]).mean(),
                  np.abs(x[:, k] - x[:, k + 1]).mean(), np.abs(x[:, -1 - k] - x[:, -2 - k]).mean()]
    return np.array(steps)


def border_excess(ir: np.ndarray, vis: np.ndarray, fused: np.ndarray) -> np.ndarray:
    """How much more the fused border lines step than the sources' own (the larger of the two), per line."""
    grey = (lambda im: cv2.cvtColor(im, cv2.COLOR_BGR2GRAY) if im.ndim == 3 else im)
    return border_steps(grey(fused)) - np.maximum(border_steps(grey(ir)), border_steps(grey(vis)))


def _pair(ivif_dir, dataset, stem):
    ir_path = next((ivif_dir / dataset / "ir").glob(f"{stem}.*"))
    vis_path = next((ivif_dir / dataset / "vis").glob(f"{stem}.*"))
    return read_ir(ir_path), read_visible(vis_path)


@pytest.fixture(scope="module")
def default_border_outputs(ivif_dir):
    """The bundled default ONNX on the border pairs, with its own padding and with --border-pad 0."""
    pairs = [_pair(ivif_dir, ds, stem) for ds, stem in BORDER_PAIRS]
    outputs = {}
    for pad in (None, 0):
        with open_backend(resolve_model("default"), border_pad=pad) as backend:
            outputs[pad] = [Fuser(backend).fuse(ir, vis) for ir, vis in pairs]
    return pairs, outputs


def test_padding_keeps_borders_as_clean_as_the_sources(default_border_outputs):
    """Issue 11: the two outermost rows/columns step from their inner neighbours by no more than the sources' own
    steps, within 1 grey level on average; without padding they do not (so the test can fail)."""
    pairs, outputs = default_border_outputs
    padded = np.array([border_excess(ir, vis, f) for (ir, vis), f in zip(pairs, outputs[None])])
    unpadded = np.array([border_excess(ir, vis, f) for (ir, vis), f in zip(pairs, outputs[0])])
    names = [f"{ds}/{stem}" for ds, stem in BORDER_PAIRS]
    assert padded.mean() <= 1.0, dict(zip(names, padded.mean(axis=1).round(2)))
    assert padded.mean(axis=1).max() <= 2.0, dict(zip(names, padded.mean(axis=1).round(2)))
    assert unpadded.mean() > padded.mean() + 1.0, (unpadded.mean(), padded.mean())


def test_border_pad_zero_on_onnx_matches_torch_without_padding(default_border_outputs):
    """`--border-pad 0` overrides the bundled ONNX's padding on ONNX Runtime; torch agrees (it pads by the same
    rule), and the padding changes only a margin: the centre of the image stays the same."""
    pytest.importorskip("torch")
    pairs, outputs = default_border_outputs
    ir, vis = pairs[0]
    for pad in (0, DEFAULT_BORDER_PAD):
        with open_backend(resolve_model("default", want="weights"), "torch", border_pad=pad) as backend:
            reference = Fuser(backend).fuse(ir, vis)
        onnx_out = outputs[0 if pad == 0 else None][0]
        assert np.abs(reference.astype(int) - onnx_out.astype(int)).max() <= 1
    margin = 24
    centre = (slice(margin, -margin), slice(margin, -margin))
    changed = np.abs(outputs[None][0][centre].astype(int) - outputs[0][0][centre].astype(int))
    assert changed.max() <= 1


def test_cli_border_pad_on_fuse(tmp_path, ivif_dir):
    from click.testing import CliRunner

    from sage_edge.cli import main

    pair = [str(ivif_dir / "TNO/ir/19.png"), str(ivif_dir / "TNO/vis/19.png")]
    for pad in ("0", "16"):
        result = CliRunner().invoke(main, ["fuse", *pair, "-o", str(tmp_path / f"{pad}.png"), "--border-pad", pad])
        assert result.exit_code == 0, result.output
    off, on = (cv2.imread(str(tmp_path / f"{n}.png")).astype(int) for n in ("0", "16"))
    assert np.abs(off - on)[:, :2].max() > 2  # the borders differ
    result = CliRunner().invoke(main, ["fuse", *pair, "-o", str(tmp_path / "x.png"), "--border-pad", "-1"])
    assert result.exit_code != 0 and not (tmp_path / "x.png").exists()


def test_export_border_pad_zero_has_no_padding_and_any_amount_overrides(tmp_path, synthetic_pair):
    pytest.importorskip("torch")
    import onnx

    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.models.checkpoint import load_student

    student = load_student(resolve_model("default", want="weights"))
    path = tmp_path / "pad0.onnx"
    export_onnx(student, path, check_pair=synthetic_pair, border_pad=0)
    model = onnx.load(str(path))
    assert {p.key: p.value for p in model.metadata_props}["sage_edge.border_pad"] == "0"
    # TensorRT's parser rules: opset <= 17, and Pad only on float tensors in reflect mode
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) <= 17
    pads = [n for n in model.graph.node if n.op_type == "Pad"]
    assert pads and all(a.s == b"reflect" for n in pads for a in n.attribute if a.name == "mode")
    ir, vis = synthetic_pair
    with open_backend(path) as plain, open_backend(path, border_pad=DEFAULT_BORDER_PAD) as padded:
        with open_backend(resolve_model("default")) as bundled:
            assert np.abs(Fuser(padded).fuse(ir, vis).astype(int) - Fuser(bundled).fuse(ir, vis).astype(int)).max() <= 1
        assert np.abs(Fuser(plain).fuse(ir, vis).astype(int) - Fuser(padded).fuse(ir, vis).astype(int)).max() > 2


def test_graph_with_fixed_padding_refuses_another_amount(tmp_path, synthetic_pair):
    """A graph whose padding is a constant (border_pad not overridable) runs as is and refuses another amount."""
    import onnx

    model = onnx.load(str(resolve_model("default")))
    inputs = [i for i in model.graph.input if i.name != "border_pad"]
    del model.graph.input[:]
    model.graph.input.extend(inputs)  # border_pad stays an initializer: a constant
    path = tmp_path / "fixed.onnx"
    onnx.save(model, str(path))
    with open_backend(path, border_pad=DEFAULT_BORDER_PAD) as backend:
        Fuser(backend).fuse(*synthetic_pair)
    with pytest.raises(SageEdgeError, match="fixed in the graph.*export --model WEIGHTS --border-pad 0"):
        open_backend(path, border_pad=0)
    # a tool that folds the padding and drops the metadata (ModelOpt's quantizer does): unknown, so refused
    del model.metadata_props[:]
    onnx.save(model, str(path))
    with open_backend(path) as backend:
        Fuser(backend).fuse(*synthetic_pair)
    with pytest.raises(SageEdgeError, match="does not say which border padding"):
        open_backend(path, border_pad=DEFAULT_BORDER_PAD)


def test_engine_border_pad_is_checked_against_its_sidecar():
    """TensorRT builds the padding in: a different --border-pad is refused with the re-export command."""
    record = {"border_pad": 16, "onnx": {"path": "model.onnx"}}
    engine_sidecar.check_border_pad("m.engine", record, None)
    engine_sidecar.check_border_pad("m.engine", record, 16)
    with pytest.raises(SageEdgeError, match="built with --border-pad 16, not 0.*export --model WEIGHTS --border-pad 0 -o model.onnx"):
        engine_sidecar.check_border_pad("m.engine", record, 0)
    with pytest.raises(SageEdgeError, match="does not say"):
        engine_sidecar.check_border_pad("m.engine", {}, 0)


def test_openvino_runs_the_exported_padding_and_refuses_another(synthetic_pair):
    """OpenVINO's ONNX reader makes the border_pad initializer a constant (as TensorRT does): the default runs
    like ONNX Runtime, an explicit equal amount is accepted, another amount is refused in one line."""
    pytest.importorskip("openvino")
    model = resolve_model("default")
    with open_backend(model, "onnxruntime") as backend:
        reference = Fuser(backend).fuse(*synthetic_pair)
    for amount in (None, DEFAULT_BORDER_PAD):
        with open_backend(model, "openvino", border_pad=amount) as backend:
            fused = Fuser(backend).fuse(*synthetic_pair)
        assert np.abs(fused.astype(int) - reference.astype(int)).max() <= 1
    with pytest.raises(SageEdgeError, match=r"border padding \(16\) is fixed for OpenVINO.*--border-pad 0"):
        open_backend(model, "openvino", border_pad=0)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_frame_smaller_than_the_padding_is_one_line(backend):
    """Reflect padding needs more pixels per side than it mirrors: ONNX Runtime refuses such a frame, OpenVINO
    returns no image; both give the same one line."""
    if backend == "openvino":
        pytest.importorskip("openvino")
    ir, vis = np.full((10, 40), 90, np.uint8), np.full((10, 40, 3), 120, np.uint8)
    with open_backend(resolve_model("default"), backend) as opened:
        with pytest.raises(SageEdgeError, match="a 40x10 frame is smaller than the border padding needs"):
            Fuser(opened).fuse(ir, vis)
    with open_backend(resolve_model("default"), "onnxruntime", border_pad=0) as opened:
        assert Fuser(opened).fuse(ir, vis).shape == (10, 40, 3)
