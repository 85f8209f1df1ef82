"""sage-edge export"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.atomic import check_writable
from sage_edge.commands.options import BORDER_PAD_HELP
from sage_edge.errors import SageEdgeError
from sage_edge.io_contract import DEFAULT_BORDER_PAD


def _require_torch() -> None:
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise SageEdgeError(
            f"export needs torch and onnx ({exc.name} is missing): pip install 'sage-edge[export]'"
        ) from None


@click.command()
@click.option("--model", "-m", default="default", show_default=True,
              help="Zoo name or student weights (.pt/.pth state_dict, .safetensors).")
@click.option("-o", "--output", type=click.Path(path_type=Path), required=True, help="Output .onnx file.")
@click.option("--io", "io_kind", type=click.Choice(["uint8", "float"]), default="uint8", show_default=True,
              help="uint8: end-to-end graph (BGR uint8 in/out, colour maths inside). float: bare Y/IR -> Y network.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--height", type=click.IntRange(min=1), help="Static input height (with --width); dynamic size otherwise.")
@click.option("--width", type=click.IntRange(min=1), help="Static input width (with --height).")
@click.option("--check-pair", nargs=2, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="IR and visible images to check ONNX Runtime against torch (default: a synthetic pair).")
@click.option("--border-pad", type=click.IntRange(min=0), default=DEFAULT_BORDER_PAD, show_default=True,
              metavar="PIXELS", help=BORDER_PAD_HELP + " The graph's default; ONNX Runtime can override it, "
              "TensorRT builds it in.")
@click.option("--simplify/--no-simplify", default=True, show_default=True, help="Run onnxslim.")
@click.option("--fp16", is_flag=True,
              help="Write an FP16 ONNX (ModelOpt AutoCast; I/O types and colour maths kept) for TensorRT 11.")
def export(model: str, output: Path, io_kind: str, opset: int, height: int | None, width: int | None,
           check_pair: tuple[Path, Path] | None, border_pad: int, simplify: bool, fp16: bool = False) -> None:
    """Export the student to ONNX, then check it (onnx.checker, onnxslim, ONNX Runtime vs torch)."""
    if output.suffix.lower() != ".onnx":
        raise SageEdgeError(f"{output}: the output must end in .onnx")
    if (height is None) != (width is None):
        raise SageEdgeError("give both --height and --width for a static shape, or neither")
    check_writable(output)
    _require_torch()
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.imageio import read_pair
    from sage_edge.models.checkpoint import load_student
    from sage_edge.zoo import resolve_model

    student = load_student(resolve_model(model, want="weights"))
    pair = None
    if check_pair:
        ir, vis = read_pair(*check_pair)
        if vis.ndim == 2:
            import numpy as np

            vis = np.repeat(vis[..., None], 3, axis=2)
        if ir.shape != vis.shape[:2]:
            raise SageEdgeError("--check-pair: IR and visible sizes differ")
        pair = (ir, vis)
    if fp16:
        from sage_edge.export.onnx_export import export_fp16

        fp16_report = export_fp16(student, output, io_kind=io_kind, opset=opset,
                                  static_size=(height, width) if height else None, check_pair=pair,
                                  simplify=simplify, border_pad=border_pad)
        click.echo(f"wrote {fp16_report.path} (FP16 via ModelOpt AutoCast, io={fp16_report.io_kind} kept; "
                   f"{fp16_report.fp16_nodes} nodes FP16, {fp16_report.fp32_nodes} FP32)")
        click.echo(f"check-trt: opset {fp16_report.opset}, passes the ONNX parser rules of TensorRT "
                   f"{', '.join(fp16_report.trt_versions)}")
        return
    report = export_onnx(student, output, io_kind=io_kind, opset=opset,
                         static_size=(height, width) if height else None, check_pair=pair, simplify=simplify,
                         border_pad=border_pad)
    shape = "static {}x{} (WIDTHxHEIGHT)".format(*report.static_size[::-1]) if report.static_size else "dynamic size"
    source = "given pair" if check_pair else "synthetic pair"
    click.echo(f"wrote {report.path} (io={report.io_kind}, opset {report.opset}, {shape}, "
               f"{report.nodes_before_slim}->{report.nodes_after_slim} nodes after onnxslim, "
               f"border pad {report.border_pad})")
    click.echo(f"check: ONNX Runtime vs torch on {source} {report.check_shape[1]}x{report.check_shape[0]}: "
               f"max abs diff {report.max_abs_diff:g} (tolerance {report.tolerance:g}) OK")
    click.echo(f"check-trt: passes the ONNX parser rules of TensorRT {', '.join(report.trt_versions)}")
