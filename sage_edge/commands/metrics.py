"""sage-edge metrics IR VIS FUSED [--json] [--metrics EN,SD,...]"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.metrics import METRIC_NAMES, PSNR_PEAKS, mean_metrics, parse_metric_names

metrics_option = click.option(
    "--metrics", "metric_list", default=",".join(METRIC_NAMES), show_default=True,
    help="Comma-separated metrics to compute (case-insensitive).",
)
psnr_peak_option = click.option(
    "--psnr-peak", type=click.Choice(PSNR_PEAKS), default="255", show_default=True,
    help="PSNR peak: 255 (textbook), or max = max(F) as the CDDFuse code does.",
)
ssim_range_option = click.option(
    "--ssim-data-range", type=click.Choice(["2", "255"]), default="2", show_default=True,
    help="SSIM data_range: 2 (scikit-image's float default, as the CDDFuse evaluator) or 255.",
)


@click.command()
@click.argument("ir", type=click.Path(path_type=Path))
@click.argument("vis", type=click.Path(path_type=Path))
@click.argument("fused", type=click.Path(path_type=Path))
@metrics_option
@psnr_peak_option
@ssim_range_option
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object: {"images": {...}, "mean": {...}}.')
def metrics(ir: Path, vis: Path, fused: Path, metric_list: str, psnr_peak: str, ssim_data_range: str,
            as_json: bool) -> None:
    """Fusion-quality metrics (EN SD SF AG MI SCD VIF Qabf SSIM PSNR CC Nabf) of fused images.

    IR, VIS and FUSED are three image files, or three directories whose files are matched by stem.
    Conventions follow CDDFuse's Evaluator (docs/metrics.md). Nabf: lower is better.
    """
    from sage_edge.evaluation import find_triples, json_text, score_triples, text_table

    from sage_edge.pairs import resolve_pairs, unpaired_note

    names = parse_metric_names(metric_list)
    triples = find_triples(ir, vis, fused)
    note = unpaired_note(resolve_pairs(ir, vis)) if ir.is_dir() else None
    if note:
        click.echo(note, err=True)
    scores = score_triples(triples, names, psnr_peak, float(ssim_data_range), progress=not as_json)
    mean = mean_metrics(scores.values())
    if as_json:
        click.echo(json_text({"images": scores, "mean": mean}))
        return
    click.echo(text_table({**scores, "mean": mean} if len(scores) > 1 else scores, names))
