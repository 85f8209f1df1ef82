"""Train the student on source terms alone (no teacher, no SAM): how the bundled default model is made.

    L = mse_vis·MSE(F,Y) + mse_ir·MSE(F,IR) + grad·L1(∇F, max(∇Y, ∇IR))
        + intensity·L1(F, max(Y, IR))
        + background·mean((1 - s)·|F - Y|) + targets·mean(s·|F - max(Y, IR)|)     s = IR saliency
        + out_of_range·mean(relu(-F) + relu(F - 1))
    (``sage_edge.train.losses.source_loss``; with ``clamp_output`` every term but the last sees F clamped
    to [0, 1], the image inference writes.)

Two phases, so that the loss ends up judging exactly the network that inference runs:
  1. ``freeze_bn_at`` x steps with BatchNorm in training mode (batch statistics), as usual;
  2. BatchNorm's running statistics are re-estimated over ``bn_calibration_batches`` fresh batches
     (a plain average, not the running average of the last few batches), then frozen: the remaining
     steps train in eval mode, the mode of export and inference.
Batch statistics of 4 crops from 45 very different pairs are not the statistics inference uses: the 2024
default (recipe ``sage``: SAGE's terms on the raw Tanh output, batch statistics to the end) gave a crop of
the night pair MSRS/00858N a mean of 41 grey levels in training mode and -3 at inference, 79 % of it below
0 (docs/training.md, "Why the 2024 default crushed night scenes").

Read top to bottom: config, data, model, loop, save.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from sage_edge.errors import SageEdgeError
from sage_edge.models.checkpoint import save_student_safetensors
from sage_edge.models.student import StudentNet
from sage_edge.train.dataset import RandomCropPairs, dataset_pairs, load_pair
from sage_edge.train.losses import source_loss


@dataclass
class SourceTrainConfig:
    data: str = "../shared/data/ivif"
    out: str = "runs/source"
    steps: int = 3000
    batch_size: int = 4
    crop_height: int = 192
    crop_width: int = 256
    lr: float = 2e-3  # SAGE's student learning rate
    lr_min: float = 1e-5  # cosine schedule floor
    seed: int = 2
    threads: int = 0  # 0: torch's default
    # loss weights (source_loss); SAGE's student terms are mse 3 / 2, grad 9, no intensity term
    mse_vis_weight: float = 3.0
    mse_ir_weight: float = 2.0
    grad_weight: float = 9.0
    intensity_weight: float = 0.0  # L1(F, max(Y, IR))
    background_weight: float = 0.0  # mean((1 - s)|F - Y|), s = IR saliency
    targets_weight: float = 0.0  # mean(s|F - max(Y, IR)|)
    contrast_weight: float = 0.0  # mean(s·relu(c(IR) - c(F))), c = local contrast
    out_of_range_weight: float = 0.0
    clamp_output: bool = False  # the loss sees F clamped to [0, 1], as inference does
    # BatchNorm: re-estimate the statistics and freeze them after this fraction of the steps (1.0: never)
    freeze_bn_at: float = 1.0
    bn_calibration_batches: int = 64

    def loss_weights(self) -> dict:
        """Keyword arguments of ``source_loss``."""
        return {"mse_vis": self.mse_vis_weight, "mse_ir": self.mse_ir_weight, "grad": self.grad_weight,
                "intensity": self.intensity_weight, "background": self.background_weight,
                "targets": self.targets_weight, "contrast": self.contrast_weight,
                "out_of_range": self.out_of_range_weight,
                "clamp": self.clamp_output}


# `sage-edge train source --recipe NAME`: named configs, overridable by --config and options.
RECIPES = {
    # SAGE's student source terms, batch statistics to the end: the recipe of the 2024 default (crushes nights).
    "sage": SourceTrainConfig(),
    # The default model's recipe (sage_edge/assets/MODEL_CARD.md).
    "default": SourceTrainConfig(steps=600, mse_vis_weight=3.0, mse_ir_weight=2.0, grad_weight=9.0,
                                 intensity_weight=1.0, background_weight=4.0, targets_weight=16.0,
                                 out_of_range_weight=10.0, clamp_output=True, freeze_bn_at=0.5),
}


def make_source_config(recipe: str = "default", config_file: str | None = None, **overrides) -> SourceTrainConfig:
    """A recipe, then a JSON file of fields, then keyword overrides (None = keep)."""
    if recipe not in RECIPES:
        raise SageEdgeError(f"unknown recipe '{recipe}'; use one of {', '.join(RECIPES)}")
    config = RECIPES[recipe]
    if config_file:
        try:
            values = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as exc:
            raise SageEdgeError(f"{config_file}: cannot read config JSON ({str(exc).splitlines()[0]})") from None
        known = {f.name for f in fields(SourceTrainConfig)}
        unknown = sorted(set(values) - known) if isinstance(values, dict) else ["<not an object>"]
        if unknown:
            raise SageEdgeError(f"{config_file}: unknown config field(s): {', '.join(unknown)}")
        config = replace(config, **values)
    config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
    if not 0.0 <= config.freeze_bn_at <= 1.0:
        raise SageEdgeError(f"freeze_bn_at must be between 0 and 1, got {config.freeze_bn_at}")
    return config


def calibrate_batchnorm(model: nn.Module, batches) -> None:
    """Replace BatchNorm's running statistics by their average over ``batches`` of (vis_y, ir)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for vis_y, ir in batches:
            model(vis_y, ir)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


def train_source(config: SourceTrainConfig, progress: bool = True) -> Path:
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    pairs = [load_pair(p) for p in dataset_pairs(config.data)]
    crop = (config.crop_height, config.crop_width)
    samples = RandomCropPairs(pairs, crop, samples_per_epoch=config.steps * config.batch_size, seed=config.seed)
    loader = DataLoader(samples, batch_size=config.batch_size, shuffle=False, num_workers=0, drop_last=True)
    freeze_step = round(config.freeze_bn_at * config.steps) if config.freeze_bn_at < 1.0 else None

    student = StudentNet().train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr_min)
    weights = config.loss_weights()

    log = []
    started = time.time()
    bar = tqdm(loader, total=config.steps, desc="source training", unit="step", disable=not progress)
    for step, (vis_y, ir) in enumerate(bar, start=1):
        if step - 1 == freeze_step:
            calibration = RandomCropPairs(pairs, crop, config.bn_calibration_batches * config.batch_size,
                                          seed=config.seed + 1)
            calibrate_batchnorm(student, DataLoader(calibration, batch_size=config.batch_size))
            student.eval()  # from here on the loss sees the inference network
        fused = student(vis_y, ir)[0]
        terms = source_loss(fused, vis_y, ir, **weights)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        schedule.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"non-finite loss at step {step}: {values}")
        log.append({"step": step, "bn": "train" if student.training else "frozen", **values})
        bar.set_postfix(loss=f"{values['total']:.4f}")

    elapsed = time.time() - started
    save_student_safetensors(student.eval(), out / "student.safetensors",
                             metadata={"trainer": "source", "config": json.dumps(asdict(config))})
    (out / "train_log.json").write_text(json.dumps({
        "config": asdict(config), "seconds": elapsed, "pairs": [p.stem for p in pairs], "log": log,
    }, indent=1))
    return out / "student.safetensors"
