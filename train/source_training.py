"""Train the student on SAGE's source terms alone (no teacher, no SAM).

This is how the bundled default model was first made, before distillation:
    L = 3·MSE(F,Y) + 2·MSE(F,IR) + 9·L1(∇F, max(∇Y, ∇IR))
Read top to bottom: config, data, model, loop, save.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

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
    log_every: int = 50


def train_source(config: SourceTrainConfig) -> Path:
    torch.manual_seed(config.seed)
    if config.threads:
        torch.set_num_threads(config.threads)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)

    pairs = [load_pair(p) for p in dataset_pairs(config.data)]
    samples = RandomCropPairs(pairs, (config.crop_height, config.crop_width),
                              samples_per_epoch=config.steps * config.batch_size, seed=config.seed)
    loader = DataLoader(samples, batch_size=config.batch_size, shuffle=False, num_workers=0, drop_last=True)

    student = StudentNet().train()
    optimizer = torch.optim.Adam(student.parameters(), lr=config.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.steps, eta_min=config.lr_min)

    log = []
    started = time.time()
    progress = tqdm(loader, total=config.steps, desc="source training", unit="step")
    for step, (vis_y, ir) in enumerate(progress, start=1):
        fused = student(vis_y, ir)[0]
        terms = source_loss(fused, vis_y, ir)
        optimizer.zero_grad(set_to_none=True)
        terms["total"].backward()
        optimizer.step()
        schedule.step()
        values = {k: float(v.detach()) for k, v in terms.items()}
        if not all(math.isfinite(v) for v in values.values()):
            raise FloatingPointError(f"non-finite loss at step {step}: {values}")
        log.append({"step": step, **values})
        progress.set_postfix(loss=f"{values['total']:.4f}")

    elapsed = time.time() - started
    save_student_safetensors(student.eval(), out / "student.safetensors",
                             metadata={"trainer": "source", "config": json.dumps(asdict(config))})
    (out / "train_log.json").write_text(json.dumps({
        "config": asdict(config), "seconds": elapsed, "pairs": [p.stem for p in pairs], "log": log,
    }, indent=1))
    return out / "student.safetensors"
