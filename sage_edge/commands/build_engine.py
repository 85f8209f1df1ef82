"""sage-edge build-engine"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.errors import SageEdgeError


@click.command("build-engine")
@click.argument("model", type=click.Path(path_type=Path))
@click.option("-o", "--output", "--saveEngine", "output", type=click.Path(path_type=Path),
              help="Engine file (default: MODEL with .engine, or the cache with --cache-dir).")
@click.option("--fp16", is_flag=True, help="FP16 (TRT 8.5-10: builder flag; TRT 11: FP16 ONNX via AutoCast).")
@click.option("--int8", is_flag=True, help="INT8 from a Q/DQ ONNX (an FP32 ONNX is quantized first with --calib).")
@click.option("--calib", type=click.Path(path_type=Path), help="Calibration pairs for --int8 on an FP32 ONNX.")
@click.option("--workspace", "--memPoolSize", "workspace",
              help="Workspace memory pool limit: MiB, or a size (512M, 2G), or trtexec's workspace:1024M.")
@click.option("--min-shape", "--minShapes", "min_shape", metavar="WxH",
              help="Smallest frame of the profile, WIDTHxHEIGHT (default 64x64); trtexec's "
                   "ir:1x64x64x1,vis:1x64x64x3 too.")
@click.option("--opt-shape", "--optShapes", "opt_shape", metavar="WxH",
              help="Frame size tuned for, WIDTHxHEIGHT (default 640x480).")
@click.option("--max-shape", "--maxShapes", "max_shape", metavar="WxH",
              help="Largest frame, WIDTHxHEIGHT (default 1920x1088).")
@click.option("--dla-core", "--useDLACore", "dla_core", type=int, help="Run on this DLA core (Jetson Orin).")
@click.option("--gpu-fallback", "--allowGPUFallback", "gpu_fallback", is_flag=True,
              help="With --dla-core: layers DLA cannot run go to the GPU (they are listed).")
@click.option("--timing-cache", "--timingCacheFile", "timing_cache", type=click.Path(path_type=Path),
              help="Timing cache file: read if present, written after the build.")
@click.option("--builder-optimization-level", "--builderOptimizationLevel", "opt_level", type=int,
              help="0-5 (TensorRT 8.6+; default 3).")
@click.option("--version-compatible", "--versionCompatible", "version_compatible", is_flag=True,
              help="Engine that later TensorRT releases can run (built with 8.6+): the same major, "
                   "and 8.6+ -> 10.x, 10.x -> 11.x.")
@click.option("--cache-dir", type=click.Path(path_type=Path),
              help="Engine cache keyed by model sha256 + TRT version + device + precision + profile.")
@click.option("--calib-samples", type=int, default=32, show_default=True, help="Calibration crops for --int8.")
def build_engine(model: Path, output: Path | None, fp16: bool, int8: bool, calib: Path | None,
                 workspace: str | None, min_shape: str | None, opt_shape: str | None, max_shape: str | None,
                 dla_core: int | None, gpu_fallback: bool, timing_cache: Path | None, opt_level: int | None,
                 version_compatible: bool, cache_dir: Path | None, calib_samples: int) -> None:
    """Build a TensorRT engine from a sage-edge ONNX model, on the device that will run it.

    Writes OUT.engine and OUT.engine.json (TensorRT version, GPU, precision, profile, ONNX
    sha256, options). Flag names follow trtexec (its spellings are accepted too).
    """
    from sage_edge.export.engine_builder import BuildError, BuildOptions, EngineBuilder, parse_hw, parse_workspace_mib

    if output is not None and output.suffix.lower() not in (".engine", ".plan", ".trt"):
        raise SageEdgeError(f"{output}: the engine file must end in .engine, .plan or .trt")
    options = BuildOptions(
        onnx=model, output=output, fp16=fp16, int8=int8, calib=calib,
        workspace_mib=parse_workspace_mib(workspace) if workspace is not None else None,
        min_shape=parse_hw(min_shape, "--min-shape") if min_shape else None,
        opt_shape=parse_hw(opt_shape, "--opt-shape") if opt_shape else None,
        max_shape=parse_hw(max_shape, "--max-shape") if max_shape else None,
        dla_core=dla_core, gpu_fallback=gpu_fallback, timing_cache=timing_cache,
        builder_optimization_level=opt_level, version_compatible=version_compatible, cache_dir=cache_dir,
        calib_samples=calib_samples,
    )
    if not model.is_file():
        raise SageEdgeError(f"{model}: no such ONNX file")
    if model.suffix.lower() not in (".onnx", ".xml"):
        raise SageEdgeError(f"{model}: build-engine takes an ONNX model; export weights first "
                            f"(`sage-edge export --model {model} -o {model.stem}.onnx`)")
    _refuse_cpu_int8(model)
    _check_parser_rules(model)
    try:
        report = EngineBuilder(options, echo=click.echo).build()
    except BuildError as exc:
        for line in exc.details:
            click.echo(line, err=True)
        raise
    for note in report.notes:
        click.echo(note)
    if report.cached:
        click.echo(f"cache hit: {report.engine} (TensorRT {report.tensorrt}, {report.precision}); nothing built")
        return
    click.echo(f"wrote {report.engine} (TensorRT {report.tensorrt}, {report.precision}, {report.method}, "
               f"io={report.io_kind}, built in {report.build_seconds:.1f} s)")
    if report.profile:
        first = next(iter(report.profile.values()))
        h_axis = 1 if report.io_kind == "uint8" else 2  # NHWC uint8 graph, NCHW float graph

        def size(shape: list[int]) -> str:
            return f"{shape[h_axis + 1]}x{shape[h_axis]}"

        click.echo(f"profile (WIDTHxHEIGHT): min {size(first['min'])} opt {size(first['opt'])} "
                   f"max {size(first['max'])}")
    if report.pinned_fp32_layers:
        click.echo(f"kept {report.pinned_fp32_layers} colour-maths layers in FP32")
    if report.timing_cache:
        click.echo(f"timing cache: {report.timing_cache}")
    if report.dla_core is not None:
        if report.gpu_fallback_layers:
            click.echo(f"DLA core {report.dla_core}: {len(report.gpu_fallback_layers)} layers fall back to the GPU:")
            for name in report.gpu_fallback_layers:
                click.echo(f"  GPU fallback: {name}")
        else:
            click.echo(f"DLA core {report.dla_core}: every layer runs on the DLA")
    click.echo(f"sidecar: {report.sidecar}")


def _installed_tensorrt() -> str | None:
    """The installed TensorRT's version string, or None (the builder itself says how to install it)."""
    try:
        import tensorrt
    except (ImportError, OSError):
        return None
    return str(getattr(tensorrt, "__version__", "")) or None


def _check_parser_rules(model: Path) -> None:
    """check-trt's verdict for the TensorRT that will build (every version when none is installed),
    before the real parser runs: a refused model gets its reason, not "the parser reported N errors"."""
    from sage_edge.export.trt_compat import TRT_VERSIONS, check_trt, version_key

    installed = _installed_tensorrt()
    key = version_key(installed) if installed else None
    versions = (key,) if key else TRT_VERSIONS
    which = f"TensorRT {', '.join(versions)}; " + (f"TensorRT {installed} is installed" if installed
                                                   else "no TensorRT is installed here")
    try:
        report = check_trt(model, versions)
    except SageEdgeError as exc:
        if "pip install onnx" not in str(exc):
            raise
        click.echo(f"check-trt: skipped ({exc})")  # a Jetson without onnx: the real parser still checks
        return
    if report.violations:
        for violation in report.violations:
            click.echo(str(violation), err=True)
        raise SageEdgeError(f"{model}: TensorRT's ONNX parser would refuse it ({len(report.violations)} "
                            f"violation(s) above, rules of {which}); no engine built")
    click.echo(f"check-trt: {model.name} passes the ONNX parser rules of {which}")


def _refuse_cpu_int8(model: Path) -> None:
    """A model ``quantize --target cpu`` made runs on ONNX Runtime's CPU provider only: say so, build nothing."""
    if model.suffix.lower() == ".xml":
        raise SageEdgeError(f"{model}: an OpenVINO IR is not a TensorRT input; build-engine takes an FP32 .onnx, "
                            "or the Q/DQ .onnx of `sage-edge quantize MODEL.onnx --target tensorrt --calib DIR "
                            "-o MODEL.int8.onnx`")
    try:
        from sage_edge.export.quantize_cpu import ORT_CPU_TARGET, model_int8_target
    except ImportError:  # no onnx package: the builder's own checks apply
        return
    if model_int8_target(model) == ORT_CPU_TARGET:
        raise SageEdgeError(f"{model}: quantized for ONNX Runtime on CPUs (quantize --target cpu), not for "
                            "TensorRT; build from the FP32 model, or quantize it with --target tensorrt")
