"""build-engine control flow against TEST DOUBLES of tensorrt/pycuda (tests/doubles), per TensorRT release.

The doubles expose only what each release documents (8.6: builder flags + EXPLICIT_BATCH;
10.x: no bindings API, EXPLICIT_BATCH ignored; 11: no FP16/INT8 flags). No real TensorRT here.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import pytest

import tiny_models  # noqa: E402

from conftest import run_cli  # noqa: E402
from sage_edge.errors import SageEdgeError  # noqa: E402

VERSIONS = ["8.6.2", "10.3.0", "11.0.0"]




@pytest.fixture()
def models(tmp_path):
    return {
        "uint8": tiny_models.uint8_model(tmp_path / "tiny_u8.onnx"),
        "float": tiny_models.float_model(tmp_path / "tiny_f.onnx"),
        "float_static": tiny_models.float_model(tmp_path / "tiny_f_static.onnx", static=(240, 320)),
        "qdq": tiny_models.float_model(tmp_path / "tiny_qdq.onnx", qdq=True),
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


@pytest.mark.parametrize("version", VERSIONS)
def test_fp16_method_per_version(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    converted = []

    def fake_autocast(source, target):  # stands in for ModelOpt AutoCast (tested for real in test_precision)
        converted.append(source)
        shutil.copyfile(source, target)

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
        assert not hasattr(trt.BuilderFlag, "FP16")  # the double follows TRT 11: the flag is gone
        assert converted == [models["float"]] and report.method == "strongly-typed"
        assert report.prepared_onnx is not None and report.prepared_onnx.is_file()
    assert report.precision == "fp16"
    assert "INT8" not in _flags(trt)


@pytest.mark.parametrize("version", VERSIONS)
def test_int8_from_qdq_model(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    report = _builder(_options(models["qdq"], tmp_path, int8=True)).build()
    if version.startswith("11."):
        assert _flags(trt) <= {"OBEY_PRECISION_CONSTRAINTS"} and report.method == "strongly-typed"
    else:
        assert "INT8" in _flags(trt) and report.method == "builder-flags"
    assert report.precision == "int8"


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


@pytest.mark.parametrize("version", VERSIONS)
def test_optimization_profile_and_sidecar(version, doubles, models, tmp_path):
    from sage_edge.export.engine_builder import parse_hw

    trt, _ = doubles(version)
    out = tmp_path / "eng" / "model.engine"
    options = _options(models["uint8"], tmp_path, output=out, min_shape=parse_hw("160x120", "m"),
                       opt_shape=parse_hw("640x480", "o"), max_shape=parse_hw("1280x720", "x"), workspace_mib=256)
    report = _builder(options, prepare_fp16=lambda s, t: shutil.copyfile(s, t)).build()
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["ir"] == ((1, 120, 160, 1), (1, 480, 640, 1), (1, 720, 1280, 1))  # NHWC uint8 graph
    assert shapes["vis"] == ((1, 120, 160, 3), (1, 480, 640, 3), (1, 720, 1280, 3))
    assert ("config.set_memory_pool_limit", ("WORKSPACE", 256 << 20)) in trt.CALLS
    assert out.is_file() and report.sidecar == out.with_name("model.engine.json")
    side = json.loads(report.sidecar.read_text())
    assert side["tensorrt"] == version and side["gpu"] == {"name": "Orin", "compute_capability": "8.7"}
    assert side["precision"] == "fp32" and side["io_kind"] == "uint8"
    assert side["profile"]["ir"]["max"] == [1, 720, 1280, 1]
    assert side["onnx"]["sha256"] == hashlib.sha256(models["uint8"].read_bytes()).hexdigest()
    assert side["options"]["workspace_mib"] == 256 and side["build_seconds"] >= 0
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.engine", "model.engine.json"]  # no temp files


def test_profile_shapes_must_be_ordered(doubles, models, tmp_path):
    doubles("10.3.0")
    with pytest.raises(SageEdgeError, match="min <= opt <= max"):
        _builder(_options(models["float"], tmp_path, min_shape=(500, 500), opt_shape=(480, 640))).build()


def test_float_graph_profile_is_nchw(doubles, models, tmp_path):
    trt, _ = doubles("8.6.2")
    _builder(_options(models["float"], tmp_path)).build()
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["vis_y"] == ((1, 1, 64, 64), (1, 1, 480, 640), (1, 1, 1088, 1920))


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_weakly_typed_fp16_pins_colour_maths_to_fp32(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    report = _builder(_options(models["uint8"], tmp_path, fp16=True)).build()
    pinned = sorted(d[0] for api, d in trt.CALLS if api == "layer.precision")
    assert pinned == ["/Cast", "/Mul", "/Mul_1"]  # float layers outside /student/; casts to uint8 are left alone
    assert "OBEY_PRECISION_CONSTRAINTS" in _flags(trt) and report.pinned_fp32_layers == 3


@pytest.mark.parametrize("version", VERSIONS)
def test_timing_cache_is_saved_and_reused(version, doubles, models, tmp_path):
    trt, _ = doubles(version)
    cache = tmp_path / "timing.cache"
    first = _builder(_options(models["float"], tmp_path, timing_cache=cache)).build()
    assert first.timing_cache.startswith("created") and cache.read_bytes().count(b"\n") == 1
    second = _builder(_options(models["float"], tmp_path, timing_cache=cache)).build()
    assert second.timing_cache.startswith("reused")
    assert trt.STATE["last_config"].loaded_cache_entries == 1  # the second build started from the saved cache
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


def test_uint8_io_needs_trt_86(doubles, models, tmp_path):
    doubles("8.5.2")
    with pytest.raises(SageEdgeError, match="--io float"):
        _builder(_options(models["uint8"], tmp_path)).build()
    _builder(_options(models["float"], tmp_path)).build()  # the float graph builds on 8.5


def test_version_gated_options(doubles, models, tmp_path):
    doubles("8.5.2")
    with pytest.raises(SageEdgeError, match="8.6"):
        _builder(_options(models["float"], tmp_path, builder_optimization_level=4)).build()
    with pytest.raises(SageEdgeError, match="8.6"):
        _builder(_options(models["float"], tmp_path, version_compatible=True)).build()
    trt, _ = doubles("10.3.0")
    _builder(_options(models["float"], tmp_path, builder_optimization_level=5, version_compatible=True)).build()
    assert trt.STATE["last_config"].builder_optimization_level == 5 and "VERSION_COMPATIBLE" in _flags(trt)


@pytest.mark.parametrize("version", ["8.6.2", "10.3.0"])
def test_dla_fallback_is_reported(version, doubles, models, tmp_path):
    from sage_edge.export.engine_builder import BuildError

    trt, _ = doubles(version, dla_unsupported_ops=("Tanh",))
    with pytest.raises(BuildError, match="--gpu-fallback") as info:
        _builder(_options(models["float"], tmp_path, fp16=True, dla_core=1)).build()
    assert info.value.details == ["not on DLA: /student/Tanh (TANH)"]
    report = _builder(_options(models["float"], tmp_path, fp16=True, dla_core=1, gpu_fallback=True)).build()
    config = trt.STATE["last_config"]
    assert config.default_device_type == trt.DeviceType.DLA and config.DLA_core == 1
    assert "GPU_FALLBACK" in _flags(trt)
    assert report.gpu_fallback_layers == ["/student/Tanh (TANH)"]
    assert json.loads(report.sidecar.read_text())["gpu_fallback_layers"] == ["/student/Tanh (TANH)"]
    shapes = {d[0]: d[1:] for api, d in trt.CALLS if api == "profile.set_shape"}
    assert shapes["ir"][0] == shapes["ir"][1] == shapes["ir"][2]  # DLA: static shapes


def test_dla_rules(doubles, models, tmp_path):
    doubles("10.3.0", num_dla_cores=0)
    with pytest.raises(SageEdgeError, match="FP16 or INT8"):
        _builder(_options(models["float"], tmp_path, dla_core=0)).build()
    with pytest.raises(SageEdgeError, match="no DLA"):
        _builder(_options(models["float"], tmp_path, dla_core=0, fp16=True)).build()
    with pytest.raises(SageEdgeError, match="static shapes"):
        _builder(_options(models["float"], tmp_path, dla_core=0, fp16=True, min_shape=(64, 64),
                          max_shape=(128, 128))).build()


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


def test_no_tensorrt_one_line_error(tmp_path, models):
    result = run_cli("build-engine", models["float"], "-o", tmp_path / "x.engine", timeout=120)
    if result.returncode == 0:
        pytest.skip("a real TensorRT is installed here")
    lines = result.stderr.strip().splitlines()
    assert result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr
    assert "python3-libnvinfer" in lines[0] and "pip install tensorrt" in lines[0]
    assert not (tmp_path / "x.engine").exists()
