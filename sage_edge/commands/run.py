"""sage-edge run --ir URI --vis URI [--output URI ...]"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.commands.options import border_pad_option
from sage_edge.errors import SageEdgeError

RUN_BACKENDS = ("auto", "tensorrt", "onnxruntime")


def resolve_run_model(model: str) -> Path:
    """An ONNX model or TensorRT engine for ``model`` (zoo name or file): the runtime never loads torch."""
    from sage_edge.zoo import resolve_model

    path = resolve_model(model, want="onnx")
    if path.suffix.lower() in (".pt", ".pth", ".safetensors"):
        raise SageEdgeError(
            f"{path}: run needs an ONNX model or a TensorRT engine; export the weights first "
            "(`sage-edge export --model ... -o model.onnx`)"
        )
    return path


@click.command()
@click.option("--ir", "ir_uri", required=True, metavar="URI",
              help="IR source: csi://N, v4l2:///dev/videoN, rtsp://..., file://PATH (video, image dir, glob), gst://PIPELINE.")
@click.option("--vis", "vis_uri", required=True, metavar="URI", help="Visible source (same URI forms).")
@click.option("--model", "-m", default="default", show_default=True,
              help="Zoo name (default) or a model file (.onnx, .engine).")
@click.option("--backend", type=click.Choice(RUN_BACKENDS), default="auto", show_default=True,
              help="Inference engine; auto picks by model file type.")
@click.option("--output", "-o", "outputs", multiple=True, metavar="URI",
              help="display://0, file://out.mp4|.avi, file://DIR/, rtsp://@:8554/name, rtp://HOST:PORT, "
                   "http://@:8080 (MJPEG + status page). Repeat for several.")
@click.option("--homography", type=click.Path(path_type=Path),
              help="IR->visible homography JSON from `sage-edge calibrate`; IR is warped onto the visible frame.")
@click.option("--no-crop", is_flag=True, help="With --homography: keep the whole visible frame (no crop to the common field).")
@click.option("--max-skew-ms", type=float, help="Pairing window in ms [default: half the slower source's frame period].")
@click.option("--ir-format", type=click.Choice(["auto", "gray8", "y16"]), default="auto", show_default=True,
              help="IR pixel format; y16 asks a V4L2 camera for 16-bit raw frames (percentile stretch, smoothed).")
@click.option("--smoothing", type=click.FloatRange(0.0, 0.999), default=0.8, show_default=True,
              help="16-bit IR: weight kept from the previous frame's stretch bounds (0 = none, no flicker control).")
@click.option("--frames", type=click.IntRange(min=1), help="Stop after N fused frames.")
@click.option("--duration", type=click.FloatRange(min=0.0, min_open=True), help="Stop after S seconds.")
@click.option("--layout", type=click.Choice(["fused", "side-by-side"]), default="fused", show_default=True,
              help="Output the fused image, or IR | visible | fused.")
@click.option("--overlay", is_flag=True, help="Draw FPS and latency on the output.")
@click.option("--loop", is_flag=True, help="Loop file sources forever (until Ctrl-C, --frames or --duration).")
@click.option("--vis-size", metavar="WxH", help="Visible camera resolution (csi/v4l2 request it; others are resized).")
@click.option("--vis-fps", type=click.FloatRange(min=0.0, min_open=True), help="Visible camera frame rate (csi/v4l2; image sequences).")
@border_pad_option
@click.option("--quiet", "-q", is_flag=True, help="Print only the summary.")
def run(ir_uri: str, vis_uri: str, model: str, backend: str, outputs: tuple[str, ...], homography: Path | None,
        no_crop: bool, max_skew_ms: float | None, ir_format: str, smoothing: float, frames: int | None,
        duration: float | None, layout: str, overlay: bool, loop: bool, vis_size: str | None,
        vis_fps: float | None, border_pad: int | None, quiet: bool) -> None:
    """Fuse two live cameras (or files): pair frames by time, register, fuse, stream.

    Ctrl-C (SIGINT) or SIGTERM finishes the frame in flight, closes the outputs (videos stay playable),
    prints a summary and exits 0. A live source that fails is reopened; fusion pauses meanwhile.
    """
    from sage_edge.runtime.pipeline import Pipeline, parse_size

    if max_skew_ms is not None and max_skew_ms <= 0:
        raise SageEdgeError("--max-skew-ms must be positive")
    model_path = resolve_run_model(model)
    log = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    pipeline = Pipeline(
        ir_uri, vis_uri, model=str(model_path), backend=backend, outputs=outputs, homography=homography,
        crop=not no_crop, max_skew_ms=max_skew_ms, ir_format=ir_format, frames=frames, duration=duration,
        layout=layout, overlay=overlay, loop=loop, vis_size=parse_size(vis_size), vis_fps=vis_fps,
        smoothing=smoothing, border_pad=border_pad, log=log,
    )
    if not outputs:
        click.echo("note: no --output given; fusing without writing anything (add -o file://out.mp4 or http://@:8080)",
                   err=True)
    for output in pipeline.outputs:
        if hasattr(output, "port") and not quiet:
            host, port = output.address
            click.echo(f"serving {output.uri} at http://{'localhost' if host == '0.0.0.0' else host}:{port}/", err=True)
    summary = pipeline.run(handle_signals=True)
    click.echo(summary.format())
