"""sage-edge bench: latency / memory / energy over model x backend x precision x resolution."""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.atomic import check_writable
from sage_edge.errors import SageEdgeError

DEFAULT_RESOLUTION = "640x480"


@click.command()
@click.option("--model", "-m", "models", multiple=True,
              help="Zoo name or model file (.onnx, .engine, .pt/.safetensors); repeat for several. [default: default]")
@click.option("--backend", "backends", multiple=True, type=click.Choice(["onnxruntime", "openvino", "tensorrt", "torch"]),
              help="Backend(s) to time; repeat for several. [default: onnxruntime]")
@click.option("--precision", "precisions", multiple=True, type=click.Choice(["fp32", "bf16", "fp16", "int8"]),
              help="Precision(s); a precision a backend lacks is skipped with the reason. [default: fp32]")
@click.option("--resolution", "resolutions", multiple=True, metavar="WxH",
              help=f"Input size(s), WIDTHxHEIGHT; repeat for several. [default: {DEFAULT_RESOLUTION}]")
@click.option("--warmup", default=10, show_default=True, type=int, help="Untimed iterations per configuration.")
@click.option("--iterations", type=int, default=None, help="Timed iterations per configuration. [default: 100]")
@click.option("--duration", type=float, default=None, metavar="S",
              help="Time each configuration for S seconds instead of --iterations.")
@click.option("--pipeline", is_flag=True, help="Time the full `run` pipeline on file sources, not bare inference.")
@click.option("--json", "json_out", type=click.Path(path_type=Path), help="Write the results as JSON (schema in docs/bench.md).")
@click.option("--plot", "plot_out", type=click.Path(path_type=Path), help="Write a PNG: latency distribution and stage bars.")
@click.option("--markdown", "markdown_out", type=click.Path(path_type=Path), help="Write a markdown results table.")
@click.option("--compare", "compare_files", nargs=2, type=click.Path(path_type=Path), metavar="A.json B.json",
              help="Print B/A ratios between two saved runs per matching configuration, and exit.")
@click.option("--estimate", "estimate_module", metavar="MODULE",
              help="Print a roofline ESTIMATE of the FP16/INT8 latency floor on a Jetson module "
                   "(orin-nano, orin-nx-8, orin-nx-16, orin-agx-32, orin-agx-64), and exit.")
@click.option("--data", "data_dir", type=click.Path(path_type=Path), default=None,
              help="Folder of IR/visible datasets for the inputs. [default: ../shared/data/ivif]")
@click.option("--frames", default=8, show_default=True, type=int, help="Distinct pairs cycled through.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed that picks the pairs.")
@click.option("--threads", "threads", multiple=True, type=int,
              help="CPU threads (onnxruntime, openvino); repeat to compare, e.g. --threads 1 --threads 2 --threads 0; "
                   "a comparison saves the fastest as this machine's default. [default: 0, the measured default]")
@click.option("--block", default=1, show_default=True, type=int,
              help="Cells take turns every N timed iterations (interleaved, so that their ratios hold).")
@click.option("--tegrastats-interval", default=100, show_default=True, type=int, metavar="MS",
              help="tegrastats sampling interval on Jetson.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars.")
def bench(models, backends, precisions, resolutions, warmup, iterations, duration, pipeline, json_out, plot_out,
          markdown_out, compare_files, estimate_module, data_dir, frames, seed, threads, block, tegrastats_interval,
          quiet) -> None:
    """Benchmark latency (per stage, p50/p90/p99), memory and energy per frame.

    Every combination of --model x --backend x --precision x --resolution x --threads runs on the
    same seeded real image pairs, resized to the resolution, timed interleaved (the cells take turns),
    with each cell's quality against its model's fp32 cell. Cells that cannot run here are listed
    as skipped, with the reason.

    \b
    Examples:
      sage-edge bench --model default --resolution 640x480 --iterations 200 --json out.json --plot out.png
      sage-edge bench --model fused.engine --backend tensorrt --precision fp16 --duration 30
      sage-edge bench --backend onnxruntime --backend openvino --precision fp32 --precision int8 --threads 1 --threads 2
      sage-edge bench --compare before.json after.json
      sage-edge bench --model default --resolution 640x512 --estimate orin-nx-16
    """
    from sage_edge import benchmarking as bm

    if compare_files:
        a, b = (bm.load_result(p) for p in compare_files)
        click.echo(bm.format_compare(a, b, str(compare_files[0]), str(compare_files[1])))
        return
    models = list(models) or ["default"]
    sizes = [bm.parse_resolution(r) for r in (resolutions or [DEFAULT_RESOLUTION])]
    if estimate_module:
        click.echo(bm.estimate_text(models, sizes, estimate_module))
        return
    if iterations is not None and duration is not None:
        raise SageEdgeError("give --iterations or --duration, not both")
    opts = bm.RunOptions(warmup=warmup, iterations=100 if iterations is None else iterations, duration_s=duration,
                         tegrastats_interval_ms=tegrastats_interval, progress=not quiet)
    opts.check()
    _check_outputs(json_out, plot_out, markdown_out)
    from sage_edge.zoo import ZOO, resolve_model

    for spec in models:  # a typo fails now, before any input is loaded or anything is timed
        if spec not in ZOO:
            resolve_model(spec)
    if data_dir is not None and not data_dir.is_dir():
        raise SageEdgeError(f"--data {data_dir}: no such directory (leave --data out to use ../shared/data/ivif "
                            "or synthetic pairs)")
    cells = bm.grid(models, list(backends) or ["onnxruntime"], list(precisions) or ["fp32"], sizes, pipeline,
                    threads=list(threads) or [0])
    inputs = bm.load_inputs(data_dir, frames=frames, seed=seed, echo=click.echo)
    doc = bm.run_grid(cells, inputs, opts, echo=click.echo, settings={"seed": seed, "threads": list(threads) or [0]},
                      block=block, record_tuning=True)
    click.echo(bm.format_table(doc, include_skipped=False))  # skipped cells were printed as they came
    if not any(r["status"] == "ok" for r in doc["results"]):
        raise SageEdgeError("no configuration could run here (see the skipped lines above); nothing written")
    if json_out:
        bm.write_json(doc, json_out)
        click.echo(f"wrote {json_out}")
    if markdown_out:
        bm.write_text(markdown_out, bm.format_markdown(doc))
        click.echo(f"wrote {markdown_out}")
    if plot_out:
        bm.plot(doc, plot_out)
        click.echo(f"wrote {plot_out}")


def _check_outputs(*paths: Path | None) -> None:
    """Fail before timing anything if an output cannot be written."""
    for path, suffixes in zip(paths, ((".json",), (".png", ".svg", ".pdf"), (".md", ".markdown"))):
        if path is None:
            continue
        if path.suffix.lower() not in suffixes:
            raise SageEdgeError(f"{path}: use a {' or '.join(suffixes)} file")
        if path.is_dir():
            raise SageEdgeError(f"{path}: is a directory")
        check_writable(path)
    if paths[1] is not None:  # --plot: find out now, not after the whole benchmark
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise SageEdgeError("--plot needs matplotlib, which is not installed: pip install 'sage-edge[plot]' "
                                "(or leave out --plot)") from None
