"""SAGE's colour conventions: bit-exact with OpenCV forward, the published inverse, numpy == torch."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sage_edge import colour


@pytest.fixture(scope="module")
def every_colour() -> np.ndarray:
    """All 2**24 BGR colours as a 4096 x 4096 x 3 image."""
    v = np.arange(1 << 24, dtype=np.uint32)
    return np.stack([v & 255, (v >> 8) & 255, (v >> 16) & 255], -1).astype(np.uint8).reshape(4096, 4096, 3)


def test_ycrcb_matches_opencv_on_every_colour(every_colour: np.ndarray) -> None:
    y, cr, cb = colour.ycrcb_from_bgr_image(every_colour)
    expected = cv2.cvtColor(every_colour, cv2.COLOR_BGR2YCrCb)
    for ours, channel in ((y, 0), (cr, 1), (cb, 2)):
        assert np.array_equal(ours.astype(np.uint8), expected[..., channel])


def test_gray_matches_opencv_on_every_colour(every_colour: np.ndarray) -> None:
    assert np.array_equal(colour.gray_from_bgr_image(every_colour), cv2.cvtColor(every_colour, cv2.COLOR_BGR2GRAY))


def test_torch_arithmetic_equals_numpy() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (64, 64, 3)).astype(np.float32)
    ours = colour.bgr_to_ycrcb(bgr[..., 0], bgr[..., 1], bgr[..., 2])
    t = torch.from_numpy(bgr)
    theirs = colour.bgr_to_ycrcb(t[..., 0], t[..., 1], t[..., 2], floor=torch.floor)
    for a, b in zip(ours, theirs):
        assert np.array_equal(a, b.numpy())


def test_inverse_is_sage_formula_and_rounding() -> None:
    # Y = 0.5, Cr = 0.75, Cb = 0.25: R = 0.5 + 1.403*0.25, G = 0.5 - 0.714*0.25 + 0.344*0.25, B = 0.5 - 1.773*0.25
    y = np.array([[0.5]], np.float32)
    bgr = colour.bgr_image_from_fused_y(y, np.array([[0.75 * 255]]), np.array([[0.25 * 255]]))
    expected_rgb = [0.5 + 1.403 * 0.25, 0.5 - 0.714 * 0.25 + 0.344 * 0.25, 0.5 - 1.773 * 0.25]
    expected_bgr = [int(min(max(v, 0), 1) * 255 + 0.5) for v in expected_rgb[::-1]]
    assert bgr[0, 0].tolist() == expected_bgr


def test_unit_to_levels_clamps_and_rounds_half_up() -> None:
    x = np.array([-0.3, 0.0, 0.5 / 255, 1.5 / 255, 1.0, 1.7], np.float32)
    assert colour.unit_to_levels(x).tolist() == [0, 0, 1, 2, 255, 255]


def test_grey_visible_gives_exact_luminance() -> None:
    grey = np.arange(256, dtype=np.uint8).reshape(16, 16)
    y, cr, cb = colour.ycrcb_from_bgr_image(np.repeat(grey[..., None], 3, axis=2))
    assert np.array_equal(y, grey) and np.all(cr == 128) and np.all(cb == 128)


def test_plane_forward_equals_fixed_point_reference(every_colour: np.ndarray) -> None:
    """The folded coefficients (what the graph and the host run) give OpenCV's fixed-point result exactly."""
    planes = [every_colour[..., c].astype(np.float32) for c in range(3)]
    for ours, reference in zip(colour.luma_chroma_planes(*planes), colour.bgr_to_ycrcb(*planes)):
        assert np.array_equal(ours, reference)


def test_level_inverse_is_the_sage_formula_up_to_float_rounding() -> None:
    """fused_levels + chroma_offsets == SAGE's unit-scale inverse (ycrcb_unit_to_bgr + unit_to_levels), except
    where float32 rounding sits on a half-level edge: then one level, on a tiny fraction of pixels."""
    rng = np.random.default_rng(0)
    y = rng.uniform(-1.0, 1.0, (512, 512)).astype(np.float32)
    y[:16] = np.arange(16 * 512).reshape(16, 512) / (16 * 512 - 1)  # every part of [0, 1], densely
    cr, cb = (rng.integers(0, 256, (512, 512)).astype(np.float32) for _ in range(2))
    ours = colour.bgr_image_from_fused_y(y, cr, cb).astype(np.int16)
    b, g, r = colour.ycrcb_unit_to_bgr(y, colour.to_unit(cr), colour.to_unit(cb))
    reference = np.stack([colour.unit_to_levels(c) for c in (b, g, r)], axis=-1).astype(np.int16)
    differ = np.abs(ours - reference)
    assert differ.max() <= 1 and np.mean(differ > 0) < 1e-3
    assert np.array_equal(colour.gray_image_from_fused_y(y), colour.unit_to_levels(y).astype(np.uint8))


class _IrAsFusedY:
    """A stand-in student for the colour tests: fused Y = the IR input (so Y and chroma vary independently)."""

    def __new__(cls):
        torch = pytest.importorskip("torch")

        class Stub(torch.nn.Module):
            def forward(self, y, ir):
                return ir + 0.0 * y, ()

        return Stub()


def test_end_to_end_graph_colour_maths_is_bit_exact_with_colour_py(every_colour: np.ndarray, tmp_path) -> None:
    """The exported uint8 graph's colour maths (forward, inverse, rounding) == colour.py on all 2**24 colours,
    each with a random fused Y, run by ONNX Runtime as the product runs it; and TensorRT-parseable I/O."""
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    from sage_edge.models.end_to_end import EndToEndFusion

    module = EndToEndFusion.__new__(EndToEndFusion)
    torch.nn.Module.__init__(module)
    module.student = _IrAsFusedY()
    module.border_pad = 0  # the colour maths alone
    path = tmp_path / "colour_only.onnx"
    dummy = (torch.zeros(1, 8, 8, 1, dtype=torch.uint8), torch.zeros(1, 8, 8, 3, dtype=torch.uint8))
    axes = {n: {1: "h", 2: "w"} for n in ("ir", "vis", "fused", "fused_y")}
    torch.onnx.export(module, dummy, str(path), input_names=["ir", "vis"], output_names=["fused", "fused_y"],
                      dynamic_axes=axes, opset_version=17, dynamo=False)
    model = onnx.load(str(path))
    consumers = {i: n.op_type for n in model.graph.node for i in n.input}
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert all(consumers[i.name] == "Cast" for i in model.graph.input)
    assert all(producers[o.name] == "Cast" for o in model.graph.output)
    input_casts = [n.output[0] for n in model.graph.node if n.op_type == "Cast" and n.input[0] in ("ir", "vis")]
    assert "Transpose" not in {n.op_type for n in model.graph.node if set(n.input) & set(input_casts)}

    ir = np.random.default_rng(1).integers(0, 256, every_colour.shape[:2], dtype=np.uint8)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    fused, fused_y = session.run(None, {"ir": ir[None, :, :, None], "vis": every_colour[None]})
    _, cr, cb = colour.ycrcb_from_bgr_image(every_colour)
    fused_unit = colour.to_unit(ir.astype(np.float32))
    assert np.array_equal(fused[0], colour.bgr_image_from_fused_y(fused_unit, cr, cb))
    assert np.array_equal(fused_y[0, :, :, 0], colour.gray_image_from_fused_y(fused_unit))
