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
@click.option("--workspace", "--memPoolSize", "workspace", type=int, help="Workspace memory pool limit, MiB.")
@click.option("--min-shape", "--minShapes", "min_shape", help="Smallest frame HxW of the profile (default 64x64).")
@click.option("--opt-shape", "--optShapes", "opt_shape", help="Frame HxW tuned for (default 480x640).")
@click.option("--max-shape", "--maxShapes", "max_shape", help="Largest frame HxW (default 1088x1920).")
@click.option("--dla-core", "--useDLACore", "dla_core", type=int, help="Run on this DLA core (Jetson Orin).")
@click.option("--gpu-fallback", "--allowGPUFallback", "gpu_fallback", is_flag=True,
              help="With --dla-core: layers DLA cannot run go to the GPU (they are listed).")
@click.option("--timing-cache", "--timingCacheFile", "timing_cache", type=click.Path(path_type=Path),
              help="Timing cache file: read if present, written after the build.")
@click.option("--builder-optimization-level", "--builderOptimizationLevel", "opt_level", type=int,
              help="0-5 (TensorRT 8.6+; default 3).")
@click.option("--version-compatible", "--versionCompatible", "version_compatible", is_flag=True,
              help="Engine that later TensorRT releases of the same major version can run (8.6+).")
@click.option("--cache-dir", type=click.Path(path_type=Path),
              help="Engine cache keyed by model sha256 + TRT version + device + precision + profile.")
@click.option("--calib-samples", type=int, default=32, show_default=True, help="Calibration crops for --int8.")
def build_engine(model: Path, output: Path | None, fp16: bool, int8: bool, calib: Path | None,
                 workspace: int | None, min_shape: str | None, opt_shape: str | None, max_shape: str | None,
                 dla_core: int | None, gpu_fallback: bool, timing_cache: Path | None, opt_level: int | None,
                 version_compatible: bool, cache_dir: Path | None, calib_samples: int) -> None:
    """Build a TensorRT engine from a sage-edge ONNX model, on the device that will run it.

    Writes OUT.engine and OUT.engine.json (TensorRT version, GPU, precision, profile, ONNX
    sha256, options). Flag names follow trtexec (its spellings are accepted too).
    """
    from sage_edge.export.engine_builder import BuildError, BuildOptions, EngineBuilder, parse_hw

    if output is not None and output.suffix.lower() not in (".engine", ".plan", ".trt"):
        raise SageEdgeError(f"{output}: the engine file must end in .engine, .plan or .trt")
    options = BuildOptions(
        onnx=model, output=output, fp16=fp16, int8=int8, calib=calib, workspace_mib=workspace,
        min_shape=parse_hw(min_shape, "--min-shape") if min_shape else None,
        opt_shape=parse_hw(opt_shape, "--opt-shape") if opt_shape else None,
        max_shape=parse_hw(max_shape, "--max-shape") if max_shape else None,
        dla_core=dla_core, gpu_fallback=gpu_fallback, timing_cache=timing_cache,
        builder_optimization_level=opt_level, version_compatible=version_compatible, cache_dir=cache_dir,
        calib_samples=calib_samples,
    )
    if not model.is_file():
        raise SageEdgeError(f"{model}: no such ONNX file")
    _refuse_cpu_int8(model)
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
        click.echo(f"profile: min {first['min']} opt {first['opt']} max {first['max']}")
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


def _refuse_cpu_int8(model: Path) -> None:
    """A model ``quantize --target cpu`` made runs on ONNX Runtime's CPU provider only: say so, build nothing."""
    if model.suffix.lower() == ".xml":
        raise SageEdgeError(f"{model}: an OpenVINO IR is not a TensorRT input; build-engine takes an FP32 .onnx "
                            "or `sage-edge quantize --target tensorrt` output")
    try:
        from sage_edge.export.quantize_cpu import ORT_CPU_TARGET, model_int8_target
    except ImportError:  # no onnx package: the builder's own checks apply
        return
    if model_int8_target(model) == ORT_CPU_TARGET:
        raise SageEdgeError(f"{model}: quantized for ONNX Runtime on CPUs (quantize --target cpu), not for "
                            "TensorRT; build from the FP32 model, or quantize it with --target tensorrt")
