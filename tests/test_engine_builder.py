"""build-engine control flow against TEST DOUBLES of tensorrt/pycuda (tests/doubles), per TensorRT release.

The doubles expose only what each release's Python bindings expose (tests/doubles/trt_api.json, extracted
from NVIDIA/TensorRT tag 8.5.3, release/8.6, release/10.3, release/10.12, release/11.0) and refuse what the
real parser and builder refuse (each rule cites its source in tests/doubles/fake_tensorrt.py). No real TensorRT.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

import tiny_models  # noqa: E402

from conftest import run_cli  # noqa: E402
from sage_edge.errors import SageEdgeError  # noqa: E402

VERSIONS = ["8.5.2", "8.6.2", "10.3.0", "11.0.0"]


@pytest.fixture()
def models(tmp_path):
    return {
        "uint8": tiny_models.uint8_model(tmp_path / "tiny_u8.onnx"),
        "float": tiny_models.float_model(tmp_path / "tiny_f.onnx"),
        "float_static": tiny_models.float_model(tmp_path / "tiny_f_static.onnx", static=(240, 320)),
        "qdq": tiny_models.float_model(tmp_path / "tiny_qdq.onnx", qdq=True),
        "fp16": tiny_models.float_model(tmp_path / "tiny_fp16.onnx", fp16=True),
        "uint8_transpose": tiny_models.uint8_transpose_model(tmp_path / "bad_u8.onnx"),
    }


def _builder(options, **kwargs):
    from sage_edge.export.engine_builder import EngineBuilder

    return EngineBuilder(options, **kwargs)


def _options(onnx, tmp_path, **kw):
    from sage_edge.export.engine_builder import BuildOptions

    return BuildOptions(onnx=onnx, output=kw.pop("output", tmp_path / "out.engine"), **kw)


def _flags(trt):
    return {detail for api, detail in trt.CALLS if api == "config.set_flag"}


def _network_flags(trt):
    return [detail for api, detail in trt.CALLS if api == "builder.create_network"][0]


def _no_onnx_package(monkeypatch):
    """A Jetson without the onnx package: the builder can only look at the parsed network."""
    from sage_edge.export import engine_builder

    monkeypatch.setattr(engine_builder, "_onnx_facts", lambda path: None)


# -- precision: from what the parsed network holds (review A3) -----------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_fp16_method_per_version(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    converted = []

    def fake_autocast(source, target):  # stands in for ModelOpt AutoCast (tested for real in test_precision)
        converted.append(source)
        shutil.copyfile(models["fp16"], target)

    report = _builder(_options(models["float"], tmp_path, fp16=True), prepare_fp16=fake_autocast).build()
    net_flags = _network_flags(trt)
    if version.startswith("8."):
        assert net_flags == 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        assert "FP16" in _flags(trt) and report.method == "builder-flags" and not converted
    elif version.startswith("10."):
        assert net_flags == 0  # EXPLICIT_BATCH is deprecated/ignored in 10
        assert "FP16" in _flags(trt) and report.method == "builder-flags" and not converted
    else:
        assert net_flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert not hasattr(trt.BuilderFlag, "FP16")  # the double follows TRT 11's bindings: the flag is gone
        assert converted == [models["float"]] and report.method == "strongly-typed"
        assert report.prepared_onnx is not None and report.prepared_onnx.is_file()
    assert report.precision == "fp16"
    assert "INT8" not in _flags(trt) and ("config.clear_flag", "TF32") not in trt.CALLS  # TF32 cleared for fp32 only


@pytest.mark.parametrize("with_onnx", [True, False])
def test_fp16_on_11_refused_when_the_network_has_no_fp16(with_onnx, doubles, models, tmp_path, monkeypatch):
    """TRT 11 has no FP16 flag: an AutoCast that left the model FP32 must not give an engine labelled fp16."""
    doubles("11.0.0")
    if not with_onnx:
        _no_onnx_package(monkeypatch)
    with pytest.raises(SageEdgeError, match="no FP16 tensors"):
        _builder(_options(models["float"], tmp_path, fp16=True),
                 prepare_fp16=lambda s, t: shutil.copyfile(s, t)).build()
    assert not (tmp_path / "out.engine").exists()
    # Without onnx the builder finds out from the parsed network and converts then.
    report = _builder(_options(models["float"], tmp_path, fp16=True),
                      prepare_fp16=lambda s, t: shutil.copyfile(models["fp16"], t)).build()
    assert report.precision == "fp16" and json.loads(report.sidecar.read_text())["precision"] == "fp16"


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_from_qdq_model(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    report = _builder(_options(models["qdq"], tmp_path, int8=True)).build()
    if version.startswith("11."):
        assert _flags(trt) == set() and report.method == "strongly-typed"
    else:
        assert "INT8" in _flags(trt) and report.method == "builder-flags"
    assert report.precision == "int8"


def test_int8_fp16_label_on_11_follows_the_network(doubles, models, tmp_path):
    doubles("11.0.0")
    report = _builder(_options(models["qdq"], tmp_path, int8=True, fp16=True)).build()
    assert report.precision == "int8" and any("no FP16 tensors" in n for n in report.notes)


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_without_qdq_layers_is_refused_without_onnx(version, doubles, models, tmp_path, monkeypatch):
    """Before: with no onnx package, --int8 on an FP32 ONNX set the INT8 flag and labelled an FP32 engine int8."""
    _no_onnx_package(monkeypatch)
    doubles(version)
    with pytest.raises(SageEdgeError, match="no Q/DQ nodes"):
        _builder(_options(models["float"], tmp_path, int8=True)).build()
    assert not (tmp_path / "out.engine").exists()


def test_int8_on_fp32_onnx_quantizes_first_or_explains(doubles, models, tmp_path):
    doubles("10.3.0")
    with pytest.raises(SageEdgeError, match="--calib"):
        _builder(_options(models["float"], tmp_path, int8=True)).build()
    calls = []

    def fake_quantize(source, target, calib, samples):
        calls.append((source, calib, samples))
        shutil.copyfile(models["qdq"], target)

    report = _builder(_options(models["float"], tmp_path, int8=True, calib=tmp_path, calib_samples=5),
                      prepare_int8=fake_quantize).build()
    assert calls == [(models["float"], tmp_path, 5)]
    assert report.precision == "int8" and any("quantized" in n for n in report.notes)


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_qdq_model_without_int8_flag_is_refused(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    with pytest.raises(SageEdgeError, match="add --int8"):
        _builder(_options(models["qdq"], tmp_path)).build()
    # The double refuses the build too (the 8.x developer guide: Q/DQ needs the INT8 flag).
    assert not [c for c in trt.CALLS if c[0] == "builder.build_serialized_network"]


# -- profile, sidecar, caches ----------------------------------------------------------------------
@pytest.mark.parametrize("version", VERSIONS)
def test_optimization_profile_and_sidecar(version, doubles, models, tmp_path):
    from sage_edge.export.engine_builder import parse_hw

    trt, _ = doubles(version)
    out = tmp_path / "eng" / "model.engine"
    options = _options(models["uint8"], tmp_path, output=out, min_shape=parse_hw("160x120", "m"),
                       opt_shape=parse_hw("640x480", "o"), max_shape=parse_hw("1280x720", "x"), workspace_mib=256)
    report = _builder(options).build()
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["ir"] == ((1, 120, 160, 1), (1, 480, 640, 1), (1, 720, 1280, 1))  # NHWC uint8 graph
    assert shapes["vis"] == ((1, 120, 160, 3), (1, 480, 640, 3), (1, 720, 1280, 3))
    assert ("config.set_memory_pool_limit", ("WORKSPACE", 256 << 20)) in trt.CALLS
    assert ("config.clear_flag", "TF32") in trt.CALLS  # an fp32 engine is FP32, not TF32
    assert out.is_file() and report.sidecar == out.with_name("model.engine.json")
    side = json.loads(report.sidecar.read_text())
    assert side["tensorrt"] == version
    assert side["gpu"] == {"name": "Orin", "compute_capability": "8.7", "name_source": "cuda"}
    assert side["precision"] == "fp32" and side["io_kind"] == "uint8"
    assert side["profile"]["ir"]["max"] == [1, 720, 1280, 1]
    assert side["onnx"]["sha256"] == hashlib.sha256(models["uint8"].read_bytes()).hexdigest()
    assert side["options"]["workspace_mib"] == 256 and side["build_seconds"] >= 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.engine", "model.engine.json"]  # no temp files


def test_profile_shapes_must_be_ordered(doubles, models, tmp_path):
    doubles("10.3.0")
    with pytest.raises(SageEdgeError, match="min <= opt <= max"):
        _builder(_options(models["float"], tmp_path, min_shape=(500, 500), opt_shape=(480, 640))).build()


def test_invalid_profile_is_one_line(doubles, models, tmp_path, monkeypatch):
    """IBuilderConfig.add_optimization_profile returns -1 for an invalid profile: the build stops there."""
    from sage_edge.runtime.tensorrt_api import shared_logger

    trt, _ = doubles("10.3.0")
    config_class = type(trt.Builder(shared_logger(trt)).create_builder_config())
    monkeypatch.setattr(config_class, "add_optimization_profile", lambda self, profile: -1)
    with pytest.raises(SageEdgeError, match="rejected the optimization profile"):
        _builder(_options(models["float"], tmp_path)).build()
    assert not (tmp_path / "out.engine").exists()


def test_float_graph_profile_is_nchw(doubles, models, tmp_path):
    trt, _ = doubles("8.6.2")
    _builder(_options(models["float"], tmp_path)).build()
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["vis_y"] == ((1, 1, 64, 64), (1, 1, 480, 640), (1, 1, 1088, 1920))


@pytest.mark.parametrize("version", ["8.5.2", "8.6.2", "10.3.0"])
def test_weakly_typed_fp16_pins_colour_maths_to_fp32(version, doubles, models, tmp_path):
    """On the parser's real layer graph: casts and constants stay unpinned, broadcast shuffles follow their users."""
    trt, _ = doubles(version)
    report = _builder(_options(models["uint8"], tmp_path, fp16=True)).build()
    pinned = sorted(d[0] for api, d in trt.CALLS if api == "layer.precision")
    layers = trt.STATE["last_network"]
    unnamed_shuffles = [layers.get_layer(i).name for i in range(layers.num_layers)
                        if layers.get_layer(i).name.startswith("(Unnamed Layer")]
    assert len(unnamed_shuffles) == 2  # the parser's broadcast of the scalar constants 'scale' and 'levels'
    assert pinned == sorted(["/Mul", "/Mul_1", "/Transpose", "/Transpose_1"] + unnamed_shuffles)
    assert "OBEY_PRECISION_CONSTRAINTS" in _flags(trt) and report.pinned_fp32_layers == 6
    assert report.precision == "fp16"


def test_double_fails_a_build_that_pins_a_cast(doubles, models, tmp_path):
    """The old pinning (any layer with FLOAT outputs) pinned the uint8->float Cast; the double fails that build."""
    trt, _ = doubles("10.3.0")
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(0)
    assert trt.OnnxParser(network, trt.Logger()).parse(models["uint8"].read_bytes(), "m.onnx")
    cast = next(network.get_layer(i) for i in range(network.num_layers) if network.get_layer(i).name == "/Cast")
    assert cast.type == trt.LayerType.CAST  # 8.6-GA onward: an ICastLayer
    cast.precision = trt.DataType.FLOAT
    config = builder.create_builder_config()
    for flag in (trt.BuilderFlag.FP16, trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS):
        config.set_flag(flag)
    profile = builder.create_optimization_profile()
    for name, c in (("ir", 1), ("vis", 3)):
        profile.set_shape(name, (1, 8, 8, c), (1, 8, 8, c), (1, 8, 8, c))
    assert config.add_optimization_profile(profile) == 0
    assert builder.build_serialized_network(network, config) is None
    assert "no implementation obeys" in trt.LOG[-1][1]


@pytest.mark.parametrize("version", VERSIONS)
def test_timing_cache_is_saved_and_reused(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    cache = tmp_path / "timing.cache"
    first = _builder(_options(models["float"], tmp_path, timing_cache=cache)).build()
    assert first.timing_cache.startswith("created") and cache.read_bytes().count(b"\n") == 1
    second = _builder(_options(models["float"], tmp_path, timing_cache=cache)).build()
    assert second.timing_cache.startswith("reused")
    assert trt.STATE["last_config"]._loaded_cache_entries == 1  # the second build started from the saved cache
    assert cache.read_bytes().count(b"\n") == 2


def test_cache_dir_second_build_is_a_hit(doubles, models, tmp_path):
    trt, _ = doubles("10.3.0")
    from sage_edge.export.engine_builder import BuildOptions

    options = BuildOptions(onnx=models["float"], fp16=True, cache_dir=tmp_path / "cache")
    first = _builder(options).build()
    second = _builder(options).build()
    builds = [c for c in trt.CALLS if c[0] == "builder.build_serialized_network"]
    assert len(builds) == 1 and not first.cached and second.cached and second.engine == first.engine
    name = first.engine.name  # jetson-inference style key: model, sha, TRT version, device, precision, profile
    sha = hashlib.sha256(models["float"].read_bytes()).hexdigest()[:16]
    assert name.startswith(f"tiny_f.{sha}.10.3.0.GPU.FP16.") and name.endswith(".engine")
    # Another precision is another key: a build, not a hit.
    third = _builder(BuildOptions(onnx=models["float"], cache_dir=tmp_path / "cache")).build()
    assert not third.cached and third.engine != first.engine


def test_one_trt_logger_per_process(doubles, models, tmp_path):
    """TensorRT warns when a second, different logger is passed; the builder and the runtime share one."""
    from sage_edge.runtime import tensorrt_api

    trt, _ = doubles("10.3.0")
    report = _builder(_options(models["float"], tmp_path)).build()
    _builder(_options(models["float"], tmp_path, output=tmp_path / "b.engine")).build()
    tensorrt_api.TensorRTEngine(report.engine.read_bytes(), trt)
    assert not [m for _, m in trt.LOG if "differs from one already provided" in m]
    trt.Runtime(trt.Logger())  # the double does warn for a second logger
    assert [m for _, m in trt.LOG if "differs from one already provided" in m]


# -- parser rules -----------------------------------------------------------------------------------
def test_parser_errors_are_reported_one_per_line(doubles, models, tmp_path):
    from sage_edge.export.engine_builder import BuildError

    doubles("10.3.0", parser_errors=[(3, "/student/Conv", "Conv", "Unsupported kernel shape"),
                                     (7, "/Resize", "Resize", "Unsupported mode 'cubic'")])
    with pytest.raises(BuildError) as info:
        _builder(_options(models["float"], tmp_path)).build()
    assert len(info.value.details) == 2
    assert "node /student/Conv (Conv)" in info.value.details[0] and "Unsupported kernel shape" in info.value.details[0]
    assert "/Resize" in info.value.details[1] and "\n" not in str(info.value)
    assert not (tmp_path / "out.engine").exists()


def test_parser_errors_cli_prints_each_on_its_own_line(doubles, models, tmp_path):
    from click.testing import CliRunner

    from sage_edge.cli import main

    doubles("8.6.2", parser_errors=[(3, "", "", "first problem"), (7, "", "", "second problem")])
    result = CliRunner().invoke(main, ["build-engine", str(models["float"]), "-o", str(tmp_path / "x.engine")])
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert any(l.endswith("node #3: first problem") for l in lines)
    assert any(l.endswith("node #7: second problem") for l in lines)
    assert lines[-1].startswith("error: ") and "2 error(s)" in lines[-1]


@pytest.mark.parametrize("version", VERSIONS)
def test_uint8_io_builds_on_every_version(version, doubles, models, tmp_path):
    """Review B6: onnx-tensorrt 8.5-GA maps UINT8 and casts it (convertDtype, the Cast importer): no 8.6 gate."""
    trt, _ = doubles(version)
    report = _builder(_options(models["uint8"], tmp_path)).build()
    assert report.io_kind == "uint8" and report.engine.is_file()
    casts = [trt.STATE["last_network"].get_layer(i) for i in range(trt.STATE["last_network"].num_layers)]
    kind = "IDENTITY" if version.startswith("8.5") else "CAST"  # 8.5-GA: an IIdentityLayer cast; 8.6-GA: ICastLayer
    assert [l.type.name for l in casts if l.name == "/Cast"] == [kind]


@pytest.mark.parametrize("version", VERSIONS)
def test_uint8_transpose_model_is_refused(version, doubles, models, tmp_path):
    """The planted pre-fix pattern: uint8 input -> Transpose -> Cast. 8.6+: the parser refuses the uint8
    intermediate (ModelImporter.cpp); 8.5 parses it and the builder refuses a uint8 input to a non-cast layer."""
    from sage_edge.export.engine_builder import BuildError

    trt, _ = doubles(version)
    if version.startswith("8.5"):
        network = trt.Builder(trt.Logger()).create_network(1)
        assert trt.OnnxParser(network, trt.Logger()).parse(models["uint8_transpose"].read_bytes(), "x.onnx")
        config = trt.Builder(trt.Logger()).create_builder_config()
        assert trt.Builder(trt.Logger()).build_serialized_network(network, config) is None
        assert "UINT8 input to a layer that is not a cast" in trt.LOG[-1][1]
    else:
        with pytest.raises(BuildError, match="uint8") as info:
            _builder(_options(models["uint8_transpose"], tmp_path)).build()
        assert "UINT8 types for intermediate tensors" in info.value.details[0]
        assert "/Transpose" in info.value.details[0] or "node #0" in info.value.details[0]
    assert not (tmp_path / "out.engine").exists()


@pytest.mark.parametrize("version, refused", [("8.5.2", True), ("8.6.2", True), ("10.3.0", False), ("11.0.0", False)])
def test_opset_above_the_parser_maximum_is_refused(version, refused, doubles, tmp_path):
    from sage_edge.export.engine_builder import BuildError

    doubles(version)
    model = tiny_models.float_model(tmp_path / "opset19.onnx", opset=19)
    if refused:  # onnx-tensorrt 8.5-GA / 8.6-GA docs/operators.md: up to opset 17
        with pytest.raises(BuildError, match="parser reported") as info:
            _builder(_options(model, tmp_path)).build()
        assert "opset 19" in info.value.details[0]
    else:
        assert _builder(_options(model, tmp_path)).build().engine.is_file()


@pytest.mark.parametrize("version, names", [
    ("10.3.0", {"BuilderFlag": ["STRICT_TYPES"]}),  # removed in 10.0
    ("10.12.0", {"BuilderFlag": ["STRICT_TYPES"]}),
    ("11.0.0", {"BuilderFlag": ["FP16", "INT8", "STRICT_TYPES", "OBEY_PRECISION_CONSTRAINTS",
                                "PREFER_PRECISION_CONSTRAINTS"],
                "NetworkDefinitionCreationFlag": ["EXPLICIT_BATCH"]}),
])
def test_flags_removed_in_10_and_11_are_refused(version, names, doubles):
    trt, _ = doubles(version)
    for enum_name, members in names.items():
        for member in members:
            with pytest.raises(AttributeError):
                getattr(getattr(trt, enum_name), member)
    if version.startswith("11"):
        assert int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) == 0  # release/11.0 include/NvInfer.h
    else:
        assert hasattr(trt.BuilderFlag, "FP16") and hasattr(trt.BuilderFlag, "OBEY_PRECISION_CONSTRAINTS")


def test_layer_precision_is_gone_in_11(doubles, models):
    trt, _ = doubles("11.0.0")
    network = trt.Builder(trt.Logger()).create_network(1)
    assert trt.OnnxParser(network, trt.Logger()).parse(models["float"].read_bytes(), "f.onnx")
    layer = network.get_layer(0)
    with pytest.raises(AttributeError):
        layer.precision = trt.DataType.FLOAT
    with pytest.raises(AttributeError):
        layer.set_output_type(0, trt.DataType.FLOAT)


def test_version_gated_options(doubles, models, tmp_path):
    doubles("8.5.2")
    with pytest.raises(SageEdgeError, match="8.6"):
        _builder(_options(models["float"], tmp_path, builder_optimization_level=4)).build()
    with pytest.raises(SageEdgeError, match="8.6"):
        _builder(_options(models["float"], tmp_path, version_compatible=True)).build()
    trt, _ = doubles("10.3.0")
    _builder(_options(models["float"], tmp_path, builder_optimization_level=5, version_compatible=True)).build()
    assert trt.STATE["last_config"].builder_optimization_level == 5 and "VERSION_COMPATIBLE" in _flags(trt)


# -- DLA (review B2) -----------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_dla_fallback_is_reported_per_layer(version, doubles, models, tmp_path):
    from sage_edge.export.engine_builder import BuildError

    trt, _ = doubles(version, dla_unsupported_ops=("Tanh",))
    with pytest.raises(BuildError, match="--gpu-fallback") as info:
        _builder(_options(models["float"], tmp_path, fp16=True, dla_core=1)).build()
    assert info.value.details == ["not on DLA: /student/Tanh (ACTIVATION)"]
    report = _builder(_options(models["float"], tmp_path, fp16=True, dla_core=1, gpu_fallback=True)).build()
    config = trt.STATE["last_config"]
    assert config.default_device_type == trt.DeviceType.DLA and config.DLA_core == 1
    assert "GPU_FALLBACK" in _flags(trt)
    assert report.gpu_fallback_layers == ["/student/Tanh (ACTIVATION)"]
    assert ("config.set_device_type", ("/student/Tanh", "GPU")) in trt.CALLS
    assert json.loads(report.sidecar.read_text())["gpu_fallback_layers"] == ["/student/Tanh (ACTIVATION)"]
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["vis_y"][0] == shapes["vis_y"][1] == shapes["vis_y"][2]  # DLA: static shapes


def test_dla_lists_fp32_pinned_and_uint8_layers(doubles, models, tmp_path):
    """Per layer, not per type: the uint8 casts and the FP32-pinned colour maths cannot run on the DLA."""
    trt, _ = doubles("10.3.0", dla_unsupported_ops=())
    report = _builder(_options(models["uint8"], tmp_path, fp16=True, dla_core=0, gpu_fallback=True)).build()
    reasons = {entry.split(" (")[0]: entry for entry in report.gpu_fallback_layers}
    assert {"/Cast", "/Cast_1", "/Cast_2", "/Cast_3"} <= set(reasons)
    assert all("UINT8" in reasons[n] for n in ("/Cast", "/Cast_1"))
    assert {"/Mul", "/Mul_1", "/Transpose", "/Transpose_1"} <= set(reasons)
    assert "FP32" in reasons["/Mul"]
    assert "/student/module1/Conv" not in reasons and "/student/Tanh" not in reasons


def test_dla_rules(doubles, models, tmp_path):
    doubles("10.3.0", num_dla_cores=0)
    with pytest.raises(SageEdgeError, match="FP16 or INT8"):
        _builder(_options(models["float"], tmp_path, dla_core=0)).build()
    with pytest.raises(SageEdgeError, match="no DLA"):
        _builder(_options(models["float"], tmp_path, dla_core=0, fp16=True)).build()
    with pytest.raises(SageEdgeError, match="static shapes"):
        _builder(_options(models["float"], tmp_path, dla_core=0, fp16=True, min_shape=(64, 64),
                          max_shape=(128, 128))).build()
    doubles("8.6.2")
    with pytest.raises(SageEdgeError, match="explicit"):  # 8.x DLA does not run Q/DQ INT8
        _builder(_options(models["qdq"], tmp_path, dla_core=0, int8=True)).build()


@pytest.mark.parametrize("version, message", [("11.0.0", "11.0-11.3"), ("11.4.0", "11.0-11.3"),
                                              ("11.4.1", "Jetson AGX Orin with JetPack 7.2.2")])
def test_dla_on_tensorrt_11_is_explained(version, message, doubles, models, tmp_path):
    doubles(version, num_dla_cores=0)
    with pytest.raises(SageEdgeError, match=message) as info:
        _builder(_options(models["fp16"], tmp_path, dla_core=0, fp16=True)).build()
    assert "Orin Nano have DLA" not in str(info.value)  # not the JetPack 5/6 message


def test_static_model_rejects_other_shapes(doubles, models, tmp_path):
    trt, _ = doubles("10.3.0")
    with pytest.raises(SageEdgeError, match="static"):
        _builder(_options(models["float_static"], tmp_path, opt_shape=(480, 640))).build()
    report = _builder(_options(models["float_static"], tmp_path)).build()
    assert report.profile is None and not [c for c in trt.CALLS if c[0] == "profile.set_shape"]


def test_failed_build_writes_nothing(doubles, models, tmp_path):
    doubles("10.3.0", build_fails=True)
    with pytest.raises(SageEdgeError, match="could not build"):
        _builder(_options(models["float"], tmp_path)).build()
    assert list(tmp_path.glob("out.engine*")) == []


# -- trtexec value syntax, GPU name source -----------------------------------------------------------
def test_trtexec_value_syntax():
    from sage_edge.export.engine_builder import parse_hw, parse_workspace_mib

    assert parse_hw("640x480", "--min-shape") == (480, 640)  # WIDTHxHEIGHT, as every size flag
    assert parse_hw("ir:1x480x640x1,vis:1x480x640x3", "--minShapes") == (480, 640)
    assert parse_hw("'vis_y':1x1x240x320,'ir':1x1x240x320", "--optShapes") == (240, 320)
    for bad in ("ir:1x480x640x1,vis:1x240x320x3", "ir:480x640", "vis:1xAx640x3"):
        with pytest.raises(SageEdgeError):
            parse_hw(bad, "--maxShapes")
    assert parse_workspace_mib("1024") == 1024
    assert parse_workspace_mib("workspace:1024M") == 1024
    assert parse_workspace_mib("workspace:2G") == 2048 and parse_workspace_mib("0.5G") == 512
    for bad in ("dlaSRAM:1M", "lots", "workspace:100K"):
        with pytest.raises(SageEdgeError):
            parse_workspace_mib(bad)


def test_build_engine_cli_takes_trtexec_values(doubles, models, tmp_path):
    from click.testing import CliRunner

    from sage_edge.cli import main

    trt, _ = doubles("10.3.0")
    result = CliRunner().invoke(main, ["build-engine", str(models["uint8"]), "--saveEngine", str(tmp_path / "m.engine"),
                                       "--minShapes=ir:1x120x160x1,vis:1x120x160x3", "--optShapes=ir:1x240x320x1,"
                                       "vis:1x240x320x3", "--maxShapes=ir:1x480x640x1,vis:1x480x640x3",
                                       "--memPoolSize=workspace:512M"])
    assert result.exit_code == 0, result.output
    assert ("config.set_memory_pool_limit", ("WORKSPACE", 512 << 20)) in trt.CALLS
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["vis"] == ((1, 120, 160, 3), (1, 240, 320, 3), (1, 480, 640, 3))


def test_gpu_name_comes_from_libcuda_without_pycuda(doubles, monkeypatch):
    """Review B4: without pycuda the sidecar's name still comes from cuDeviceGetName (what the runtime compares)."""
    import sys

    from sage_edge.export import engine_builder
    from sage_edge.runtime import cuda_memory

    _, cuda = doubles("10.3.0", gpu={"name": "Orin", "cc": (8, 7)})
    monkeypatch.setitem(sys.modules, "pycuda", None)
    monkeypatch.setitem(sys.modules, "pycuda.driver", None)
    monkeypatch.setattr(cuda_memory, "_libcuda", lambda: cuda.FakeLibCuda())
    assert engine_builder.gpu_facts() == {"name": "Orin", "compute_capability": "8.7", "integrated": True,
                                          "name_source": "cuda"}


def test_no_tensorrt_one_line_error(tmp_path, models):
    result = run_cli("build-engine", models["float"], "-o", tmp_path / "x.engine", timeout=120)
    if result.returncode == 0:
        pytest.skip("a real TensorRT is installed here")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "python3-libnvinfer" in lines[0] and "pip install tensorrt" in lines[0]
    assert not (tmp_path / "x.engine").exists()


@pytest.mark.parametrize("version, at", [("8.5.2", "build"), ("8.6.2", "parse"), ("10.3.0", "parse"),
                                         ("11.0.0", "parse")])
def test_uint8_input_feeding_anything_but_a_cast_is_refused(version, at, doubles, tmp_path):
    """uint8 input -> Identity -> uint8 output: the pattern tiny_models.uint8_model had before (review C1)."""
    from onnx import TensorProto, helper

    trt, _ = doubles(version)
    graph = helper.make_graph([helper.make_node("Identity", ["vis"], ["fused"], name="/Identity")], "identity",
                              [helper.make_tensor_value_info("vis", TensorProto.UINT8, [1, 8, 8, 3])],
                              [helper.make_tensor_value_info("fused", TensorProto.UINT8, [1, 8, 8, 3])])
    model = tiny_models._save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]),
                              tmp_path / "identity.onnx")
    builder = trt.Builder(trt.Logger())
    network = builder.create_network(1 if version.startswith("8.") else 0)  # EXPLICIT_BATCH before 10
    parser = trt.OnnxParser(network, trt.Logger())
    parsed = parser.parse(model.read_bytes(), "identity.onnx")
    if at == "parse":
        assert not parsed and "must feed only Cast" in parser.get_error(0).desc()
    else:
        assert parsed and builder.build_serialized_network(network, builder.create_builder_config()) is None
