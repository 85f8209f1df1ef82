"""sage-edge train ..."""
from __future__ import annotations

import click

from sage_edge.atomic import check_writable_dir


@click.group()
def train() -> None:
    """Train students (desktop GPU; runs on CPU at small sizes). Needs the [train] extra."""


@train.command("source")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset root (ir/+vis/).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--recipe", default="default", show_default=True, type=click.Choice(["default", "sage"]),
              help="default: the bundled default model's recipe. sage: SAGE's student source terms only.")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="JSON file of SourceTrainConfig fields (over the recipe).")
@click.option("--steps", default=None, type=int, help="Training steps [recipe default: 600, sage: 3000].")
@click.option("--batch-size", default=None, type=int, help="Batch size [recipe: 4].")
@click.option("--seed", default=None, type=int, help="Seed [recipe: 2].")
@click.option("--threads", default=None, type=int, help="torch threads (0: torch's default).")
@click.option("--no-progress", is_flag=True)
def train_source_command(data: str, out: str, recipe: str, config_file: str | None, steps: int | None,
                         batch_size: int | None, seed: int | None, threads: int | None, no_progress: bool) -> None:
    """Train the student on source loss terms only (no teacher, no SAM); see docs/training.md."""
    check_writable_dir(out)
    from sage_edge.train.source_training import make_source_config, train_source

    config = make_source_config(recipe, config_file, data=data, out=out, steps=steps, batch_size=batch_size,
                                seed=seed, threads=threads)
    path = train_source(config, progress=not no_progress)
    click.echo(f"wrote {path}")


SAM_CHECKPOINT_HELP = ("SAM checkpoint (.pth from segment-anything, e.g. sam_vit_b_01ec64.pth). "
                       "'tiny-random:SEED' builds a tiny random SAM: a test fixture, not a model.")


@train.command("masks")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset root (ir/+vis/).")
@click.option("--sam-checkpoint", required=True, help=SAM_CHECKPOINT_HELP)
@click.option("--model-type", default="vit_b", show_default=True, type=click.Choice(["vit_b", "vit_l", "vit_h"]))
@click.option("--cache", default=None, type=click.Path(file_okay=False), help="Mask cache [default: DATA/sam_masks].")
@click.option("--points-per-side", default=128, show_default=True)
@click.option("--points-per-batch", default=64, show_default=True)
@click.option("--pred-iou-thresh", default=0.86, show_default=True)
@click.option("--stability-score-thresh", default=0.92, show_default=True)
@click.option("--crop-n-layers", default=1, show_default=True)
@click.option("--min-mask-region-area", default=100, show_default=True)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, cuda:N.")
def train_masks_command(data: str, sam_checkpoint: str, model_type: str, cache: str | None, points_per_side: int,
                        points_per_batch: int, pred_iou_thresh: float, stability_score_thresh: float,
                        crop_n_layers: int, min_mask_region_area: int, device: str) -> None:
    """Cache SAM's automatic masks (20 largest) for every IR and visible image; resumable."""
    import torch

    from sage_edge.train.mask_cache import MaskParams, build_cache, default_cache
    from sage_edge.train.dataset import dataset_pairs
    from sage_edge.train.sam import load_sam

    dataset_pairs(data)  # a dataset without pairs fails before SAM loads
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    sam = load_sam(sam_checkpoint, model_type, device=device)
    params = MaskParams(points_per_side=points_per_side, points_per_batch=points_per_batch,
                        pred_iou_thresh=pred_iou_thresh, stability_score_thresh=stability_score_thresh,
                        crop_n_layers=crop_n_layers, min_mask_region_area=min_mask_region_area)
    summary = build_cache(data, cache or default_cache(data), sam, params)
    click.echo(f"masks: {summary['computed']} computed, {summary['skipped']} already cached -> {summary['cache']}")


@train.command("distill")
@click.option("--data", required=True, type=click.Path(exists=True, file_okay=False), help="Dataset root (ir/+vis/).")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Run directory.")
@click.option("--sam-checkpoint", default=None, help=SAM_CHECKPOINT_HELP + " Enables L_cs.")
@click.option("--model-type", default=None, type=click.Choice(["vit_b", "vit_l", "vit_h"]), help="SAM variant for L_cs.")
@click.option("--masks", default=None, help="Mask cache [default: DATA/sam_masks]; 'none': whole-image masks.")
@click.option("--segmenter", default=None, help="TorchScript file or module:function (RGB -> logits); needs labels/.")
@click.option("--init-student", default=None, help="Start the student from these weights (zoo name or file).")
@click.option("--config", "config_file", default=None, type=click.Path(exists=True, dir_okay=False),
              help="JSON file of DistillConfig fields (over the preset).")
@click.option("--preset", default="paper", show_default=True, type=click.Choice(["paper", "smoke"]))
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from its last checkpoint.")
@click.option("--teacher-warmup-epochs", default=None, type=int, help="Teacher-only epochs before alternation.")
@click.option("--epochs", default=None, type=int)
@click.option("--threads", default=None, type=int, help="torch CPU threads.")
@click.option("--no-progress", is_flag=True)
def train_distill_command(data: str, out: str, sam_checkpoint: str | None, model_type: str | None, masks: str | None,
                          segmenter: str | None, init_student: str | None, config_file: str | None, preset: str,
                          resume: bool,
                          teacher_warmup_epochs: int | None, epochs: int | None, threads: int | None,
                          no_progress: bool) -> None:
    """Distil a student with SAGE's teacher (bi-level alternation); works under torchrun."""
    check_writable_dir(out)
    from sage_edge.train.distill import distill, make_config

    config = make_config(preset, config_file, data=data, out=out, sam_checkpoint=sam_checkpoint,
                         sam_model_type=model_type, masks=masks, segmenter=segmenter,
                         init_student=init_student,
                         teacher_warmup_epochs=teacher_warmup_epochs, epochs=epochs, threads=threads,
                         progress=False if no_progress else None)
    path = distill(config, resume=resume)
    if int(__import__("os").environ.get("RANK", "0")) == 0:
        click.echo(f"wrote {path}")
