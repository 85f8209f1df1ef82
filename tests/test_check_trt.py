"""sage-edge check-trt: TensorRT's ONNX-parser rules (per version, from onnx-tensorrt's sources) without TensorRT.

Planted models are built with onnx.helper; each refusal is checked next to a control model that differs
only in the planted detail and passes, so every test can fail.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT, run_cli
from sage_edge.errors import SageEdgeError

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from sage_edge.export import trt_compat  # noqa: E402
from sage_edge.export.trt_compat import TRT_VERSIONS, check_trt, check_trt_compatible  # noqa: E402

ONNX_TENSORRT_MIRROR = Path("/work/.mirror/onnx+onnx-tensorrt/repo")
TENSORRT_MIRROR = Path("/work/.mirror/NVIDIA+TensorRT/repo")


def _model(nodes, inputs, outputs, opset=17, initializers=(), domains=()):
    graph = helper.make_graph(nodes, "planted", inputs, outputs, list(initializers))
    opsets = [helper.make_opsetid("", opset)] + [helper.make_opsetid(d, 1) for d in domains]
    model = helper.make_model(graph, opset_imports=opsets)
    onnx.checker.check_model(model, full_check=not domains)
    return model


def _uint8_transpose_model(cast_first: bool):
    """ir uint8 1xHxWx1 -> NCHW float. cast_first=False is the planted graph (uint8 -> Transpose -> Cast)."""
    inputs = [helper.make_tensor_value_info("ir", TensorProto.UINT8, [1, "h", "w", 1])]
    outputs = [helper.make_tensor_value_info("ir_levels", TensorProto.FLOAT, [1, 1, "h", "w"])]
    if cast_first:
        nodes = [helper.make_node("Cast", ["ir"], ["ir_f"], name="/Cast", to=TensorProto.FLOAT),
                 helper.make_node("Transpose", ["ir_f"], ["ir_levels"], name="/Transpose", perm=[0, 3, 1, 2])]
    else:
        nodes = [helper.make_node("Transpose", ["ir"], ["ir_t"], name="/Transpose", perm=[0, 3, 1, 2]),
                 helper.make_node("Cast", ["ir_t"], ["ir_levels"], name="/Cast", to=TensorProto.FLOAT)]
    return _model(nodes, inputs, outputs)


def _float_model(op_type: str = "Relu", opset: int = 17, **attributes):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])
    return _model([helper.make_node(op_type, ["x"], ["y"], name=f"/student/{op_type}", **attributes)], [x], [y],
                  opset)


def _lines(violations):
    return [str(v) for v in violations]


def test_bundled_default_model_passes_every_version():
    from sage_edge.zoo import resolve_model

    report = check_trt(resolve_model("default", want="onnx"))
    assert report.versions == TRT_VERSIONS and report.violations == []


def test_planted_uint8_transpose_is_refused_by_every_version():
    violations = check_trt_compatible(_uint8_transpose_model(cast_first=False))
    assert len(violations) == 1
    line = str(violations[0])
    assert violations[0].versions == TRT_VERSIONS and violations[0].rule == "uint8"
    assert line.startswith("TensorRT 8.5, 8.6, 10, 11: node '/Transpose' (Transpose): ")
    assert "uint8 graph input 'ir'" in line and "uint8 intermediate tensor 'ir_t'" in line
    assert check_trt_compatible(_uint8_transpose_model(cast_first=True)) == []


def test_uint8_only_casts_to_and_from_fp32_fp16():
    """onnx-tensorrt 8.5-GA's Cast importer takes UINT8 <-> FLOAT/HALF only (builtin_op_importers.cpp:316-323),
    although 8.5's operators.md lists no UINT8 for Cast; TensorRT's kUINT8 contract says the same for 8.6+."""
    inputs = [helper.make_tensor_value_info("ir", TensorProto.UINT8, [1, 4])]

    def cast_to(to):
        out = helper.make_tensor_value_info("y", to, [1, 4])
        return _model([helper.make_node("Cast", ["ir"], ["y"], name="/Cast", to=to)], inputs, [out])

    assert check_trt_compatible(cast_to(TensorProto.FLOAT16)) == []
    assert check_trt_compatible(cast_to(TensorProto.FLOAT)) == []
    refused = check_trt_compatible(cast_to(TensorProto.INT32))
    assert [v.rule for v in refused] == ["uint8"] and refused[0].versions == TRT_VERSIONS
    # A uint8 output must come from a Cast, not straight from an Identity on the input.
    out = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 4])
    passthrough = _model([helper.make_node("Identity", ["ir"], ["y"], name="/Identity")], inputs, [out])
    assert "without a Cast" in str(check_trt_compatible(passthrough)[0])


def test_operator_missing_from_85_table_is_refused_on_85_only():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    scale = numpy_helper.from_array(np.ones(8, np.float32), "scale")
    model = _model([helper.make_node("LayerNormalization", ["x", "scale"], ["y"], name="/norm")], [x], [y],
                   initializers=[scale])
    violations = check_trt_compatible(model)
    assert _lines(violations) == ["TensorRT 8.5: node '/norm' (LayerNormalization): LayerNormalization is marked "
                                  "unsupported in the parser's operator table (onnx-tensorrt docs/operators.md) "
                                  "[operator rule]"]
    assert check_trt_compatible(_float_model("Relu")) == []
    unknown = check_trt_compatible(_model([helper.make_node("NoSuchOp", ["x"], ["y"], name="/x", domain="custom")],
                                          [x], [y], domains=["custom"]))
    assert unknown[0].versions == TRT_VERSIONS and "absent from" in str(unknown[0])


def test_opset_19_is_refused_by_85_and_86():
    violations = check_trt_compatible(_float_model("Relu", opset=19))
    assert _lines(violations) == ["TensorRT 8.5, 8.6: model: opset 19: the parser supports opsets 7 to 17 "
                                  "[opset rule]"]
    assert check_trt_compatible(_float_model("Relu", opset=17)) == []
    assert [v.versions for v in check_trt_compatible(_float_model("Relu", opset=21))] == [("8.5", "8.6"), ("10", "11")]


def test_data_type_outside_the_operator_table():
    """8.5's table: Sub on FP32, FP16, INT32 (INT64 arrives as INT32); 10.x: adds BF16, INT64. INT8 on neither."""
    def sub(elem):
        a = helper.make_tensor_value_info("a", elem, [4])
        b = helper.make_tensor_value_info("b", elem, [4])
        y = helper.make_tensor_value_info("y", elem, [4])
        return _model([helper.make_node("Sub", ["a", "b"], ["y"], name="/Sub")], [a, b], [y])

    assert check_trt_compatible(sub(TensorProto.INT64)) == []
    refused = check_trt_compatible(sub(TensorProto.INT8))
    assert [v.rule for v in refused] == ["dtype", "dtype"]  # 8.x and 10/11 list different types
    assert refused[0].versions == ("8.5", "8.6") and "Sub on INT8" in str(refused[0])
    strings = check_trt_compatible(sub(TensorProto.UINT16))
    assert strings and all("cannot import" in str(v) for v in strings)


def test_table_restrictions_resize_modes_and_zero_points():
    assert check_trt_compatible(_resize("linear")) == []
    refused = check_trt_compatible(_resize("cubic"))
    assert [v.rule for v in refused] == ["attribute"] and "mode='cubic'" in str(refused[0])
    assert check_trt_compatible(_qdq(zero_point=0)) == []
    refused = check_trt_compatible(_qdq(zero_point=3))
    assert {v.rule for v in refused} == {"zero-point"} and {v.node for v in refused} == {"/Q", "/DQ"}


def _resize(mode: str):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 8, 8])
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["x", "", "scales"], ["y"], name="/Resize", mode=mode)
    return _model([node], [x], [y], initializers=[scales])


def _qdq(zero_point: int):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [4])
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(zero_point, np.int8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="/Q"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="/DQ")]
    return _model(nodes, [x], [y], initializers=inits)


def test_version_names():
    assert trt_compat.version_key("8.5.2.2") == "8.5" and trt_compat.version_key("8.6.2") == "8.6"
    assert trt_compat.version_key("10.3.0.26") == "10" and trt_compat.version_key("11.0") == "11"
    assert trt_compat.version_key("8.4.1") is None and trt_compat.version_key("9.3") is None
    assert trt_compat.parse_versions(["10.3", "8.5"]) == ("8.5", "10")
    assert trt_compat.parse_versions(["8.6,11"]) == ("8.6", "11") and trt_compat.parse_versions([]) == TRT_VERSIONS
    with pytest.raises(SageEdgeError, match="--trt 9"):
        trt_compat.parse_versions(["9"])


def test_require_raises_one_line_naming_node_and_rule():
    with pytest.raises(SageEdgeError) as info:
        trt_compat.require_trt_compatible(_uint8_transpose_model(cast_first=False), what="export")
    message = str(info.value)
    assert "\n" not in message and message.startswith("export refused")
    assert "node '/Transpose' (Transpose)" in message and "uint8" in message
    trt_compat.require_trt_compatible(_uint8_transpose_model(cast_first=True))


def test_check_trt_cli(tmp_path):
    planted, fixed = tmp_path / "planted.onnx", tmp_path / "fixed.onnx"
    onnx.save(_uint8_transpose_model(cast_first=False), str(planted))
    onnx.save(_uint8_transpose_model(cast_first=True), str(fixed))
    bad = run_cli("check-trt", planted, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    lines = bad.stdout.splitlines()
    assert "uint8" in lines[0] and "'/Transpose' (Transpose)" in lines[0]
    assert [l.split(":")[0] for l in lines[-4:]] == [f"TensorRT {v}" for v in TRT_VERSIONS]
    assert all("1 violation" in l for l in lines[-4:])
    good = run_cli("check-trt", fixed, "--trt", "8.5", "--trt", "10", timeout=120)
    assert good.returncode == 0, good.stdout + good.stderr
    verdicts = [l.split(" (")[0] for l in good.stdout.splitlines() if not l.startswith("note: ")]
    assert verdicts == ["TensorRT 8.5: OK", "TensorRT 10: OK"]
    assert "8.5-GA@" in good.stdout and "10.0-GA@" in good.stdout  # the sources the verdict rests on
    missing = run_cli("check-trt", tmp_path / "nowhere.onnx", timeout=120)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no such ONNX file" in missing.stderr


def test_check_trt_without_onnx_says_how_to_install(tmp_path):
    model = tmp_path / "m.onnx"
    onnx.save(_float_model(), str(model))
    code = "import sys; sys.modules['onnx'] = None; from sage_edge.cli import main; main()"
    result = subprocess.run([sys.executable, "-c", code, "check-trt", str(model)], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "pip install onnx" in result.stderr and "Traceback" not in result.stderr


def test_check_trt_runs_without_torch():
    """A Jetson has onnx at most: check-trt (and build-engine's verdict) must not need torch."""
    from sage_edge.zoo import resolve_model

    code = ("import sys; sys.modules['torch'] = None; from sage_edge.cli import main; "
            "from sage_edge.commands import build_engine; main()")
    result = subprocess.run([sys.executable, "-c", code, "check-trt", str(resolve_model("default", want="onnx"))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK (") == len(TRT_VERSIONS)


def test_build_engine_refuses_before_the_parser(tmp_path, doubles):
    """build-engine prints check-trt's verdict for the installed TensorRT and stops there: no engine file."""
    from click.testing import CliRunner

    from sage_edge.cli import main

    planted, fixed = tmp_path / "planted.onnx", tmp_path / "fixed.onnx"
    onnx.save(_uint8_transpose_model(cast_first=False), str(planted))
    onnx.save(_float_model(opset=19), str(fixed))
    trt, _ = doubles("8.6.2")
    result = CliRunner().invoke(main, ["build-engine", str(planted), "-o", str(tmp_path / "x.engine")])
    assert result.exit_code == 1 and not (tmp_path / "x.engine").exists()
    assert "TensorRT 8.6: node '/Transpose' (Transpose)" in result.output and "uint8" in result.output
    assert "no engine built" in result.output.strip().splitlines()[-1]
    assert not [c for c in trt.CALLS if "parse" in c[0]]  # refused before the (double's) parser ran
    doubles("10.3.0")  # opset 19: refused by 8.5/8.6 only, so TensorRT 10.3 goes on to the builder
    result = CliRunner().invoke(main, ["build-engine", str(fixed), "-o", str(tmp_path / "y.engine")])
    assert "passes the ONNX parser rules of TensorRT 10; TensorRT 10.3.0 is installed" in result.output


@pytest.mark.skipif(not (ONNX_TENSORRT_MIRROR.is_dir() and TENSORRT_MIRROR.is_dir()),
                    reason="the onnx-tensorrt / TensorRT source mirrors are not on this machine")
def test_committed_rules_are_what_the_sources_say(tmp_path):
    """export/trt_parser_rules/*.json is exactly what the extraction script reads from the mirrors."""
    script = REPO_ROOT / "scripts" / "extract_trt_parser_rules.py"
    result = subprocess.run([sys.executable, str(script), "--onnx-tensorrt", str(ONNX_TENSORRT_MIRROR),
                             "--tensorrt", str(TENSORRT_MIRROR), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0 and "unknown revision" in result.stderr:
        pytest.skip(f"the mirrors lack a branch the rules come from: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr
    committed = REPO_ROOT / "export" / "trt_parser_rules"
    for version in TRT_VERSIONS:
        name = f"trt{version}.json"
        assert json.loads((tmp_path / name).read_text()) == json.loads((committed / name).read_text()), name
    rules = {v: json.loads((committed / f"trt{v}.json").read_text()) for v in TRT_VERSIONS}
    # What the review (B6, B7) and the issue rest on, as the sources say it:
    assert [rules[v]["opset"]["max"] for v in TRT_VERSIONS] == [17, 17, 20, 20]
    assert rules["8.5"]["uint8"]["cast_source"].endswith("builtin_op_importers.cpp:316-323")
    assert rules["8.5"]["dtypes"]["map"]["UINT8"] == "UINT8" and rules["8.5"]["dtypes"]["map"]["INT64"] == "INT32"
    assert "ModelImporter.cpp" in rules["8.6"]["uint8"]["intermediate_check"]["source"]
    assert "NvInferRuntimeCommon.h" in rules["8.5"]["uint8"]["intermediate_check"]["source"]


# --- Every ONNX file sage-edge writes by default passes check-trt for 8.5, 8.6, 10 and 11 -------------------
# (quantize: tests/test_quantize.py; export CLI: tests/test_export.py)


def test_export_uint8_graph_passes_and_the_a1_graph_is_refused(official_onnx, official_checkpoint, synthetic_pair,
                                                               tmp_path, monkeypatch):
    """The exporter writes graphs every version parses, and refuses (writing nothing) the graph that had
    uint8 -> Transpose -> Cast (review A1, sage_edge/models/end_to_end.py before the fix)."""
    torch = pytest.importorskip("torch")
    from sage_edge import colour
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.models.checkpoint import load_student
    from sage_edge.models.end_to_end import EndToEndFusion

    assert check_trt_compatible(official_onnx) == []

    def transpose_before_cast(self, ir, vis, border_pad=None):  # EndToEndFusion.forward at commit 82832a8
        ir_levels = ir.permute(0, 3, 1, 2).float()
        vis_levels = vis.permute(0, 3, 1, 2).float()
        b, g, r = vis_levels[:, 0:1], vis_levels[:, 1:2], vis_levels[:, 2:3]
        y, cr, cb = colour.bgr_to_ycrcb(b, g, r, floor=torch.floor)
        fused_y = self.student(colour.to_unit(y), colour.to_unit(ir_levels))[0]
        out_b, out_g, out_r = colour.ycrcb_unit_to_bgr(fused_y, colour.to_unit(cr), colour.to_unit(cb))
        bgr = torch.cat([colour.unit_to_levels(c, floor=torch.floor) for c in (out_b, out_g, out_r)], dim=1)
        grey = colour.unit_to_levels(fused_y, floor=torch.floor)
        return bgr.permute(0, 2, 3, 1).to(torch.uint8), grey.permute(0, 2, 3, 1).to(torch.uint8)

    monkeypatch.setattr(EndToEndFusion, "forward", transpose_before_cast)
    target = tmp_path / "a1.onnx"
    with pytest.raises(SageEdgeError) as info:
        export_onnx(load_student(official_checkpoint), target, check_pair=synthetic_pair)
    message = str(info.value)
    assert "\n" not in message and "uint8" in message and "(Transpose)" in message and "TensorRT 8.5" in message
    assert not target.exists() and list(tmp_path.iterdir()) == []
    with pytest.raises(SageEdgeError, match="opset 21: no supported TensorRT parses it"):
        export_onnx(load_student(official_checkpoint), target, opset=21)


def test_export_fp16_passes_every_version(official_onnx, tmp_path):
    """export --fp16 = the FP32 export (above) + AutoCast: the FP16 model keeps opset 17 and passes everywhere."""
    pytest.importorskip("modelopt")
    from sage_edge.export.fp16 import convert_fp16

    report = convert_fp16(official_onnx, tmp_path / "fp16.onnx")
    assert report.opset == 17 and report.trt_versions == TRT_VERSIONS and report.fp16_nodes > 0
    assert check_trt_compatible(report.path) == []
    model = onnx.load(str(report.path))
    assert {o.version for o in model.opset_import if o.domain in ("", "ai.onnx")} == {17}
