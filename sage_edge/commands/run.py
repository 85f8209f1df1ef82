"""sage-edge run --ir URI --vis URI [--output URI ...]"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.commands.options import border_pad_option
from sage_edge.errors import SageEdgeError

RUN_BACKENDS = ("auto", "tensorrt", "onnxruntime", "openvino")


def resolve_run_model(model: str) -> Path:
    """An ONNX model or TensorRT engine for ``model`` (zoo name or file): the runtime never loads torch."""
    from sage_edge.zoo import resolve_model

    path = resolve_model(model, want="onnx")
    if path.suffix.lower() in (".pt", ".pth", ".safetensors"):
        raise SageEdgeError(
            f"{path}: run needs an ONNX model or a TensorRT engine; export the weights first "
            f"(`sage-edge export --model {path} -o {path.stem}.onnx`, then `--model {path.stem}.onnx`)"
        )
    return path


STATUS_INTERVAL_S = 5.0


def http_settings(outputs: tuple[str, ...], credentials_file: Path | None, max_viewers: int):
    """``HttpSettings`` for the http:// outputs from the command line (the URI and environment add to it)."""
    from sage_edge.runtime.credentials import credentials_flag, read_credentials_file
    from sage_edge.runtime.http_output import HttpSettings

    if credentials_file is not None and not any(o.lower().startswith("http://") for o in outputs):
        raise SageEdgeError(f"{credentials_flag('http')} is for http:// outputs, and none is given")
    credentials = None
    if credentials_file is not None:
        credentials = read_credentials_file(credentials_file, credentials_flag("http"))
    return HttpSettings(credentials=credentials, max_viewers=max_viewers)


def rtsp_credentials_from_file(outputs: tuple[str, ...], path: Path | None):
    """``--rtsp-credentials FILE`` -> ``Credentials`` (None without it)."""
    from sage_edge.runtime.credentials import credentials_flag, read_credentials_file

    if path is None:
        return None
    if not any(o.lower().startswith("rtsp://") for o in outputs):
        raise SageEdgeError(f"{credentials_flag('rtsp')} is for rtsp:// outputs, and none is given")
    return read_credentials_file(path, credentials_flag("rtsp"))


@click.command()
@click.option("--ir", "ir_uri", required=True, metavar="URI",
              help="IR source: csi://N, v4l2:///dev/videoN, rtsp://..., file://PATH (video, image dir, glob), gst://PIPELINE.")
@click.option("--vis", "vis_uri", required=True, metavar="URI", help="Visible source (same URI forms).")
@click.option("--model", "-m", default="default", show_default=True,
              help="Zoo name (default) or a model file (.onnx, .engine, OpenVINO .xml).")
@click.option("--backend", type=click.Choice(RUN_BACKENDS), default="auto", show_default=True,
              help="Inference engine; auto picks by model file type.")
@click.option("--output", "-o", "outputs", multiple=True, metavar="URI",
              help="display://0, file://out.mp4|.avi, file://DIR/, rtsp://@:8554/name, rtp://HOST:PORT, "
                   "http://@:8080 (MJPEG + status page). Repeat for several.")
@click.option("--homography", type=click.Path(path_type=Path),
              help="IR->visible homography JSON from `sage-edge calibrate`; IR is warped onto the visible frame.")
@click.option("--no-crop", is_flag=True, help="With --homography: keep the whole visible frame (no crop to the common field).")
@click.option("--register", type=click.Choice(["auto"]),
              help="auto: find the homography from the first frames (starting from --homography if given) and "
                   "re-check it in the background for drift.")
@click.option("--register-interval", type=click.FloatRange(min=0.0, min_open=True), default=5.0, show_default=True,
              metavar="S", help="--register auto: seconds of frame time between drift re-checks.")
@click.option("--max-skew-ms", type=float, help="Pairing window in ms [default: half the slower source's frame period].")
@click.option("--ir-format", type=click.Choice(["auto", "gray8", "y16"]), default="auto", show_default=True,
              help="IR pixel format; y16 asks a V4L2 camera for 16-bit raw frames (percentile stretch, smoothed).")
@click.option("--smoothing", type=click.FloatRange(0.0, 0.999), default=0.8, show_default=True,
              help="16-bit IR: weight kept from the previous frame's stretch bounds (0 = none, no flicker control).")
@click.option("--frames", type=click.IntRange(min=1), help="Stop after N fused frames.")
@click.option("--duration", type=click.FloatRange(min=0.0, min_open=True), help="Stop after S seconds.")
@click.option("--layout", type=click.Choice(["fused", "side-by-side", "checkerboard"]), default="fused",
              show_default=True, help="Output the fused image, IR | visible | fused, or a checkerboard of the "
                                      "registered IR and visible frames (to check the registration).")
@click.option("--overlay", is_flag=True, help="Draw FPS and latency on the output.")
@click.option("--loop", is_flag=True, help="Loop file sources forever (until Ctrl-C, --frames or --duration).")
@click.option("--vis-size", metavar="WxH",
              help="Visible camera resolution, WIDTHxHEIGHT (csi/v4l2 request it; others are resized).")
@click.option("--vis-fps", type=click.FloatRange(min=0.0, min_open=True), help="Visible camera frame rate (csi/v4l2; image sequences).")
@click.option("--ir-fps", type=click.FloatRange(min=0.0, min_open=True),
              help="IR camera frame rate (csi/v4l2; image sequences, e.g. 9 for a FLIR Lepton's frames).")
@border_pad_option
@click.option("--quiet", "-q", is_flag=True,
              help=f"Print only the summary (no status line every {STATUS_INTERVAL_S:g} s on stderr).")
@click.option("--http-credentials", type=click.Path(path_type=Path), metavar="FILE",
              help="http:// outputs ask every client for USER:PASSWORD, read from FILE's first line (kept out of the "
                   "process list) [or env SAGE_EDGE_HTTP_CREDENTIALS; a bearer token: env SAGE_EDGE_HTTP_TOKEN].")
@click.option("--http-max-viewers", type=click.IntRange(1, 256), default=8, show_default=True,
              help="http:// outputs: concurrent /stream viewers; the next one gets 503 at once.")
@click.option("--reconnect-timeout", type=click.FloatRange(min=0.0), default=30.0, show_default=True, metavar="S",
              help="A live source unavailable this long ends the run with one line (outputs closed properly); 0: retry forever.")
@click.option("--rtsp-credentials", type=click.Path(path_type=Path), metavar="FILE",
              help="rtsp:// outputs ask every viewer for USER:PASSWORD, read from FILE's first line (kept out of the "
                   "process list) [or env SAGE_EDGE_RTSP_CREDENTIALS].")
def run(ir_uri: str, vis_uri: str, model: str, backend: str, outputs: tuple[str, ...], homography: Path | None,
        no_crop: bool, register: str | None, register_interval: float, max_skew_ms: float | None, ir_format: str, smoothing: float, frames: int | None,
        duration: float | None, layout: str, overlay: bool, loop: bool, vis_size: str | None,
        vis_fps: float | None, ir_fps: float | None, border_pad: int | None, quiet: bool, http_credentials: Path | None,
        http_max_viewers: int, reconnect_timeout: float, rtsp_credentials: Path | None) -> None:
    """Fuse two live cameras (or files): pair frames by time, register, fuse, stream.

    Ctrl-C (SIGINT) or SIGTERM finishes the frame in flight, closes the outputs (videos stay playable),
    prints a summary and exits 0. A live source that fails is reopened; fusion pauses meanwhile.
    While it runs, a status line (FPS, latency, pairing skew, drops) goes to stderr every few seconds.
    Videos are written at the slower source's frame rate (a video file's own, or --ir-fps/--vis-fps).
    """
    from sage_edge.runtime.pipeline import Pipeline, parse_size

    if max_skew_ms is not None and max_skew_ms <= 0:
        raise SageEdgeError("--max-skew-ms must be positive")
    http = http_settings(outputs, http_credentials, http_max_viewers)
    rtsp_auth = rtsp_credentials_from_file(outputs, rtsp_credentials)
    model_path = resolve_run_model(model)
    log = (lambda message: None) if quiet else (lambda message: click.echo(message, err=True))
    pipeline = Pipeline(
        ir_uri, vis_uri, model=str(model_path), backend=backend, outputs=outputs, homography=homography,
        crop=not no_crop, max_skew_ms=max_skew_ms, ir_format=ir_format, frames=frames, duration=duration,
        layout=layout, overlay=overlay, loop=loop, vis_size=parse_size(vis_size), vis_fps=vis_fps,
        smoothing=smoothing, log=log, ir_fps=ir_fps, status_interval_s=None if quiet else STATUS_INTERVAL_S,
        http=http, reconnect_timeout=reconnect_timeout, rtsp_credentials=rtsp_auth, register=register,
        register_interval=register_interval, border_pad=border_pad,
    )
    if not outputs:
        click.echo("note: no --output given; fusing without writing anything (add -o file://out.mp4 or http://@:8080)",
                   err=True)
    for output in pipeline.outputs:
        if getattr(output, "warning", None):  # printed even with --quiet: the stream is open to the network
            click.echo(f"warning: {output.warning}", err=True)
        if hasattr(output, "url") and not quiet:
            access = " (credential required)" if getattr(output, "protected", False) else ""
            click.echo(f"serving {output.uri} at {output.url}{access}", err=True)
        if hasattr(output, "port") and hasattr(output, "address") and not quiet:
            host, port = output.address
            access = " (credential required)" if getattr(output, "protected", False) else ""
            click.echo(f"serving {output.uri} at http://{'localhost' if host == '0.0.0.0' else host}:{port}/{access}",
                       err=True)
    summary = pipeline.run(handle_signals=True)
    click.echo(summary.format())
