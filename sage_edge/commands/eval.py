"""sage-edge eval --data DIR [--model M ...] [--baselines] [--limit N] [--out REPORT_DIR]"""
from __future__ import annotations

from pathlib import Path

import click

from sage_edge.commands.metrics import metrics_option, psnr_peak_option, ssim_range_option
from sage_edge.commands.options import backend_option, border_pad_option


@click.command("eval")
@click.option("--data", "-d", type=click.Path(path_type=Path), required=True,
              help="A dataset folder (ir/ + vis/) or a root of dataset folders (as shared/data/ivif).")
@click.option("--model", "-m", "models", multiple=True,
              help="Zoo name (default, sage-official) or model file; repeat to compare. [default: default]")
@backend_option
@click.option("--baselines", is_flag=True, help="Also score the classic mean and max fusion rules.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Use the first N pairs of each dataset.")
@click.option("--out", "-o", type=click.Path(path_type=Path), default=Path("eval_report"), show_default=True,
              help="Report directory: metrics.json, metrics.csv, report.md, charts, grid.png.")
@metrics_option
@psnr_peak_option
@ssim_range_option
@click.option("--grid", "grid_pairs", type=click.IntRange(min=0), default=4, show_default=True,
              help="Pairs shown in grid.png (0: no grid).")
@click.option("--no-charts", is_flag=True, help="Skip the matplotlib bar charts.")
@click.option("--reference", default=None, metavar="MODEL",
              help="One of the --model values: judge the other methods' quality gates against it, pair by pair "
              "(docs/metrics.md). [default: sage-official when it is among the models]")
@border_pad_option
def eval_command(data: Path, models: tuple[str, ...], backend: str, baselines: bool, limit: int | None, out: Path,
                 metric_list: str, psnr_peak: str, ssim_data_range: str, grid_pairs: int, no_charts: bool,
                 reference: str | None, border_pad: int | None) -> None:
    """Fuse a dataset with each model (and baselines), score all pairs, write a report.

    Results are given per dataset and over all pairs; Nabf is the one metric where lower is better.
    """
    from sage_edge.atomic import check_writable_dir
    from sage_edge.evaluation import evaluate, markdown_table, write_report
    from sage_edge.pairs import find_datasets, unpaired_note

    check_writable_dir(out)  # before the fusing, not after it
    note = unpaired_note(find_datasets(data))
    if note:
        click.echo(note, err=True)
    models = models or ("default",)
    if reference is None and "sage-official" in models and len(models) > 1:
        reference = "sage-official"
    result = evaluate(
        data, models, backend=backend, baselines=baselines, limit=limit, metrics=metric_list,
        psnr_peak=psnr_peak, ssim_data_range=float(ssim_data_range), grid_pairs=grid_pairs, reference=reference,
        border_pad=border_pad,
    )
    write_report(result, out, charts=not no_charts)
    click.echo(f"overall, {result.pair_count()} pairs in {len(result.scores)} dataset(s):")
    click.echo(markdown_table({label: result.overall_mean(label) for label in result.labels}, result.metric_names))
    from sage_edge.quality_gates import failures

    for label in result.labels:
        gates = result.gates(label)
        failing = sorted(key for key, g in gates["pairs"].items() if failures(g))
        means = failures(gates["means"])
        click.echo(f"gates, {label}: {len(gates['pairs']) - len(failing)}/{len(gates['pairs'])} pairs pass"
                   + (f" (failing: {', '.join(failing[:5])}{' ...' if len(failing) > 5 else ''})" if failing else "")
                   + (f"; means fail: {', '.join(g.name for g in means)}" if means else ""))
    click.echo(f"wrote {out}/report.md, metrics.json, metrics.csv")
