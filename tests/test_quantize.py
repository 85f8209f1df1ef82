"""INT8 Q/DQ quantization with ModelOpt, for real on the CPU, calibrated on the shared pairs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest

from conftest import run_cli
from sage_edge.errors import SageEdgeError

CALIB_SHAPE = (160, 160)  # placement tests; the quality test (test_precision) calibrates larger


@pytest.fixture(scope="module")
def split(ivif_dir):
    from sage_edge.export.precision_check import split_pairs
    from sage_edge.pairs import find_datasets

    return split_pairs([p for ps in find_datasets(ivif_dir).values() for p in ps])


@pytest.fixture(scope="module")
def official_float_onnx(tmp_path_factory, official_checkpoint) -> Path:
    """The published student as the bare float graph."""
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.models.checkpoint import load_student

    path = tmp_path_factory.mktemp("official_float") / "sage_official_float.onnx"
    export_onnx(load_student(official_checkpoint), path, io_kind="float")
    return path


def _quantize(model: Path, out: Path, calib):
    from sage_edge.export.quantize import quantize_onnx

    return quantize_onnx(model, out, calib, method="max", samples=4, calib_shape=CALIB_SHAPE, progress=False)


def _check_trt(report, versions=("8.5", "8.6", "10", "11")) -> None:
    """ModelOpt writes opset 19; what sage-edge writes is opset 17 (FP32 Q/DQ) and passes check-trt."""
    from sage_edge.export.onnx_export import TOLERANCE
    from sage_edge.export.trt_compat import check_trt_compatible

    assert report.trt_versions == versions
    assert check_trt_compatible(report.path, versions) == []
    model = onnx.load(str(report.path))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {report.opset}
    if versions[0] == "8.5":
        assert report.opset == 17 and report.opset_conversion_diff <= TOLERANCE[report.io_kind]


def _check_qdq_placement(fp32: Path, qdq: Path, io: str) -> None:
    from sage_edge.export.quantize import qdq_consumers

    consumers = qdq_consumers(qdq)
    assert consumers and set(consumers.values()) == {"Conv"}  # only Conv runs in INT8
    assert all(name.startswith("/student/") for name in consumers)  # never the colour maths / casts
    n_conv = sum(n.op_type == "Conv" for n in onnx.load(str(fp32)).graph.node)
    assert len(consumers) == n_conv
    model = onnx.load(str(qdq))
    want = onnx.TensorProto.UINT8 if io == "uint8" else onnx.TensorProto.FLOAT
    assert {v.type.tensor_type.elem_type for v in list(model.graph.input) + list(model.graph.output)} == {want}
    # Nodes outside the network are untouched: same ops, same names.
    outside = lambda m: sorted((n.name, n.op_type) for n in m.graph.node  # noqa: E731
                               if not n.name.startswith("/student/")
                               and n.op_type not in ("QuantizeLinear", "DequantizeLinear"))
    assert outside(model) == outside(onnx.load(str(fp32)))


def _ort_fuses(qdq: Path, pair) -> np.ndarray:
    from sage_edge.export.quantize import crop_to, load_pair_images
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.runtime.onnxruntime_backend import OnnxRuntimeBackend

    ir, vis = crop_to(*load_pair_images(pair), (120, 160))
    with OnnxRuntimeBackend(qdq) as backend:
        fused = Fuser(backend).fuse(ir, vis)
    assert fused.shape == vis.shape and fused.dtype == np.uint8 and fused.std() > 5
    return fused


def test_quantize_published_student_uint8(official_onnx, split, tmp_path):
    calib, held_back = split
    report = _quantize(official_onnx, tmp_path / "q.onnx", calib)
    assert report.io_kind == "uint8" and report.excluded_nodes > 20 and report.qdq_pairs >= 18
    _check_qdq_placement(official_onnx, report.path, "uint8")
    _check_trt(report)
    _ort_fuses(report.path, held_back[0])


def test_quantize_published_student_float(official_float_onnx, split, tmp_path):
    calib, held_back = split
    report = _quantize(official_float_onnx, tmp_path / "qf.onnx", calib)
    import onnx

    from sage_edge.export.quantize import nodes_outside_network

    outside = nodes_outside_network(onnx.load(str(official_float_onnx)))
    # the float graph has no colour maths: only the border padding (Pad, its amounts, the crop) stays unquantized
    assert report.io_kind == "float" and report.excluded_nodes == len(outside)
    assert 0 < len(outside) <= 10 and not any("Conv" in name for name in outside)
    _check_qdq_placement(official_float_onnx, report.path, "float")
    from sage_edge.export.trt_compat import check_trt_compatible

    assert check_trt_compatible(official_float_onnx) == []  # export --io float
    _check_trt(report)
    _ort_fuses(report.path, held_back[1])


def test_quantize_default_model(split, tmp_path):
    from sage_edge.zoo import resolve_model

    try:
        default = resolve_model("default", want="onnx")
    except SageEdgeError as exc:
        pytest.skip(f"bundled default model not there yet: {exc}")
    calib, _ = split
    report = _quantize(default, tmp_path / "default.qdq.onnx", calib)
    _check_qdq_placement(default, report.path, report.io_kind)
    _check_trt(report)
    # Its quality is judged per held-back pair (PSNR >= 35 dB each), not by "the output is not flat":
    # test_cpu_speed.py::test_default_model_int8_holds_on_every_held_back_pair.


def test_quantize_refuses_bad_input(split, tmp_path):
    import sys

    sys.path.insert(0, str(Path(__file__).parent / "doubles"))
    import tiny_models

    calib, _ = split
    q = tiny_models.float_model(tmp_path / "tiny_qdq.onnx", qdq=True)
    with pytest.raises(SageEdgeError, match="already quantized"):
        _quantize(q, tmp_path / "qq.onnx", calib[:2])
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(SageEdgeError, match="not a readable ONNX"):
        _quantize(tmp_path / "junk.onnx", tmp_path / "q2.onnx", calib[:2])
    assert not (tmp_path / "qq.onnx").exists() and not (tmp_path / "q2.onnx").exists()


def test_quantize_cli(official_float_onnx, ivif_dir, tmp_path):
    out = tmp_path / "cli.qdq.onnx"
    # 3 crops of 96x96 keep this quick; the floor is lowered to match (quality is judged at real sizes in
    # test_cpu_speed.py and benchmarks/bench_cpu.py).
    result = run_cli("quantize", official_float_onnx, "--calib", ivif_dir / "TNO", "-o", out,
                     "--samples", "3", "--shape", "96x96", "--min-psnr", "25")
    assert result.returncode == 0, result.stderr
    assert "INT8 Q/DQ" in result.stdout and "18 nodes" in result.stdout and out.is_file()
    assert "check-trt: opset 17, converted down from ModelOpt's opset 19" in result.stdout
    assert "passes the ONNX parser rules of TensorRT 8.5, 8.6, 10, 11" in result.stdout
    assert "checked against FP32 on" in result.stdout and "(floor 25 dB)" in result.stdout
    bad = run_cli("quantize", official_float_onnx, "--calib", tmp_path / "nowhere", "-o", tmp_path / "x.onnx")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_fp16_high_precision_keeps_colour_maths_fp32(official_onnx, split, tmp_path):
    """--high-precision fp16 must not push the colour maths (22-23 significant bits) into FP16."""
    from sage_edge.export.precision_check import compare_models, load_eval_images
    from sage_edge.export.quantize import quantize_onnx

    calib, held_back = split
    report = quantize_onnx(official_onnx, tmp_path / "q16.onnx", calib, samples=2, calib_shape=(96, 96),
                           high_precision="fp16", progress=False)
    _check_trt(report, versions=("10", "11"))  # FP16 Q/DQ needs opset 19: TensorRT 10 and 11 only
    q = report.path
    cmp = compare_models(official_onnx, q, load_eval_images(held_back, (96, 96), 2), "INT8", 35, metrics=False,
                         progress=False)
    assert cmp.min_psnr > 30.0  # colour maths in FP16 gives ~6 dB
