"""SAGE's bi-level distillation: a teacher with SAM masks, and the 135k-parameter student.

Read top to bottom: config, setup, data, models, optimisers, (resume), loop, save.

    1. teacher warm-up   the teacher alone, on its source terms (+ segmentation guidance)
    2. alternation       batches alternate (first-order bi-level optimisation):
                         even batches: the student steps, the teacher frozen;
                         odd batches:  the teacher steps with the student's feedback
                         (student frozen, no gradient to it)

Adam, lr 5e-4 (teacher) and 2e-3 (student), each with its own cosine schedule to 1e-5, stepped on
its own updates. Mixed precision on CUDA; DistributedDataParallel under ``torchrun``.
Outputs in RUN_DIR: student.safetensors (``sage-edge export --model RUN_DIR/student.safetensors``),
teacher.safetensors, config.json, losses.csv (every term, every step), loss_curve.png,
checkpoint/last.{safetensors,json} (for ``--resume``).
"""
from __future__ import annotations

import csv
import json
import math
import os
import time
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from torch.utils.data.distributed import DistributedSampler
from tqdm import tqdm

from sage_edge.atomic import atomic_path, write_bytes_atomic
from sage_edge.errors import SageEdgeError
from sage_edge.models.checkpoint import save_student_safetensors
from sage_edge.models.student import StudentNet
from sage_edge.train.checkpointing import checkpoint_paths, load_checkpoint, save_checkpoint
from sage_edge.train.dataset import RandomCropDistill, load_distill_items
from sage_edge.train.losses import student_loss, teacher_loss
from sage_edge.train.teacher import TeacherNet, masked_sources, parameter_count


# --- config -------------------------------------------------------------------------------------------


@dataclass
class DistillConfig:
    data: str = ""
    out: str = ""
    masks: str = ""  # SAM mask cache ('' = DATA/sam_masks; 'none' = whole-image masks, no SAM)
    sam_checkpoint: str = ""  # SAM for Φ in L_cs ('' = L_cs off); 'tiny-random:SEED' is a test fixture
    sam_model_type: str = "vit_b"
    segmenter: str = ""  # TorchScript file or module:function ('' = segmentation guidance off)
    init_student: str = ""  # start the student from these weights (zoo name or file; '' = random init)
    teacher_width: float = 1.0  # 1.0 = the published teacher
    crop_height: int = 192
    crop_width: int = 256
    hflip: bool = True
    batch_size: int = 4
    epochs: int = 100  # including the warm-up
    teacher_warmup_epochs: int = 10
    steps_per_epoch: int = 0  # batches per epoch and process (0: pairs // batch_size, at least 1)
    lr_teacher: float = 5e-4
    lr_student: float = 2e-3
    lr_min: float = 1e-5
    seed: int = 2
    max_pairs: int = 0  # 0: every pair
    threads: int = 0  # torch CPU threads (0: torch's default)
    amp: bool = True  # mixed precision (CUDA only)
    checkpoint_every: int = 1  # epochs
    num_workers: int = 0
    progress: bool = True


PRESETS = {
    # SAGE's published hyper-parameters (lr, schedules, crops, batch, seed, width, loss weights). The number
    # of epochs is not published with the method description: 100 with 10 warm-up epochs is our choice.
    "paper": DistillConfig(),
    # Seconds on a CPU: a tiny teacher, small crops, a few steps. For tests and trying the pipeline.
    "smoke": DistillConfig(teacher_width=0.125, crop_height=64, crop_width=64, batch_size=2, epochs=6,
                           teacher_warmup_epochs=2, steps_per_epoch=4, max_pairs=2, checkpoint_every=2),
}


def make_config(preset: str = "paper", config_file: str | os.PathLike | None = None, **overrides) -> DistillConfig:
    """Preset, then a JSON file of fields, then keyword overrides (None = keep)."""
    if preset not in PRESETS:
        raise SageEdgeError(f"unknown preset '{preset}'; use one of {', '.join(PRESETS)}")
    config = PRESETS[preset]
    known = {f.name for f in fields(DistillConfig)}
    if config_file:
        try:
            values = json.loads(Path(config_file).read_text())
        except (OSError, ValueError) as exc:
            raise SageEdgeError(f"{config_file}: cannot read config JSON ({str(exc).splitlines()[0]})") from None
        unknown = sorted(set(values) - known) if isinstance(values, dict) else ["<not an object>"]
        if unknown:
            raise SageEdgeError(f"{config_file}: unknown config field(s): {', '.join(unknown)}")
        config = replace(config, **values)
    return replace(config, **{k: v for k, v in overrides.items() if v is not None})


# --- helpers ----------------------------------------------------------------------------------------------

STUDENT_TERMS = ("fuse", "grad", "cs", "fea", "total")
TEACHER_TERMS = ("mse_vis", "mse_ir", "grad", "seg", "student", "fea", "total")
COLUMNS = (["step", "epoch", "phase", "lr"] + [f"s_{t}" for t in STUDENT_TERMS] + [f"t_{t}" for t in TEACHER_TERMS])


def setup_distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
    rank = dist.get_rank() if world > 1 else 0
    if cuda:
        torch.cuda.set_device(local_rank)
        return rank, world, torch.device("cuda", local_rank)
    return rank, world, torch.device("cpu")


def load_phi(config: DistillConfig, device: torch.device):
    if not config.sam_checkpoint:
        return None
    from sage_edge.train.sam import TruncatedEncoder, load_sam

    return TruncatedEncoder(load_sam(config.sam_checkpoint, config.sam_model_type).image_encoder, blocks=2).to(device)


def plot_losses(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for phase, key, label in (("warmup", "t_total", "teacher (warm-up)"), ("teacher", "t_total", "teacher"),
                              ("student", "s_total", "student")):
        points = [(int(r["step"]), float(r[key])) for r in rows if r["phase"] == phase and r[key] != ""]
        if points:
            ax.plot(*zip(*points), label=label, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("total loss")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)


def _values(terms: dict[str, torch.Tensor], prefix: str, names) -> dict[str, float]:
    values = {f"{prefix}{k}": float(terms[k].detach()) for k in names}
    bad = [k for k, v in values.items() if not math.isfinite(v)]
    if bad:
        raise SageEdgeError(f"non-finite loss ({', '.join(bad)}); lower the learning rate or check the data")
    return values


# --- training -------------------------------------------------------------------------------------------------


def distill(config: DistillConfig, resume: bool = False) -> Path:
    # setup
    rank, world, device = setup_distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    use_amp = config.amp and device.type == "cuda"
    main_process = rank == 0

    # data: pairs, cached SAM masks, optional labels
    masks = None if config.masks == "none" else (config.masks or str(Path(config.data) / "sam_masks"))
    items = load_distill_items(config.data, masks, max_pairs=config.max_pairs or None)
    steps_per_epoch = config.steps_per_epoch or max(1, len(items) // config.batch_size)
    config = replace(config, steps_per_epoch=steps_per_epoch)
    samples = RandomCropDistill(items, (config.crop_height, config.crop_width),
                                samples_per_epoch=steps_per_epoch * config.batch_size * world, seed=config.seed,
                                hflip=config.hflip)
    sampler = DistributedSampler(samples, num_replicas=world, rank=rank, shuffle=True, seed=config.seed)
    loader = DataLoader(samples, batch_size=config.batch_size, sampler=sampler, num_workers=config.num_workers,
                        drop_last=True, pin_memory=device.type == "cuda")

    # models: student, teacher, frozen Φ (truncated SAM encoder) and segmenter
    student = StudentNet()
    if config.init_student and not resume:
        from sage_edge.models.checkpoint import load_student
        from sage_edge.zoo import resolve_model

        student.load_state_dict(load_student(resolve_model(config.init_student, want="weights")).state_dict())
    student = student.to(device)
    teacher = TeacherNet(config.teacher_width).to(device)
    phi = load_phi(config, device)
    segmenter = None
    if config.segmenter and any(item.label is not None for item in items):
        from sage_edge.train.segmentation import load_segmenter, segmentation_loss

        segmenter = load_segmenter(config.segmenter, device)
    student_ddp = DistributedDataParallel(student) if world > 1 else student
    teacher_ddp = DistributedDataParallel(teacher, find_unused_parameters=True) if world > 1 else teacher

    # optimisers: Adam, one cosine schedule per network over its own updates
    warmup_steps = config.teacher_warmup_epochs * steps_per_epoch
    alternation_steps = (config.epochs - config.teacher_warmup_epochs) * steps_per_epoch
    if alternation_steps <= 0:
        raise SageEdgeError(f"epochs ({config.epochs}) must exceed teacher_warmup_epochs ({config.teacher_warmup_epochs})")
    student_updates_total = (alternation_steps + 1) // 2
    teacher_updates_total = warmup_steps + alternation_steps // 2
    opt_s = torch.optim.Adam(student.parameters(), lr=config.lr_student)
    opt_t = torch.optim.Adam(teacher.parameters(), lr=config.lr_teacher)
    sched_s = torch.optim.lr_scheduler.CosineAnnealingLR(opt_s, T_max=max(1, student_updates_total), eta_min=config.lr_min)
    sched_t = torch.optim.lr_scheduler.CosineAnnealingLR(opt_t, T_max=max(1, teacher_updates_total), eta_min=config.lr_min)
    scaler_s = torch.amp.GradScaler("cuda", enabled=use_amp)
    scaler_t = torch.amp.GradScaler("cuda", enabled=use_amp)
    models = {"student": student, "teacher": teacher}
    optimizers = {"student": opt_s, "teacher": opt_t}
    schedulers = {"student": sched_s, "teacher": sched_t}

    # resume
    progress = {"epoch": 0, "step": 0, "alternation_step": 0, "seconds": 0.0}
    rows: list[dict] = []
    csv_path = out / "losses.csv"
    if resume:
        progress = load_checkpoint(out, models, optimizers, schedulers, asdict(config))
        if csv_path.is_file():
            with open(csv_path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["step"]) <= progress["step"]]
                for r in rows:
                    r["step"] = int(r["step"])
    elif main_process and checkpoint_paths(out)[1].is_file():
        raise SageEdgeError(f"{out}: a run is already there; pass --resume to continue it, or choose another --out")
    if main_process:
        out.mkdir(parents=True, exist_ok=True)
        with open(csv_path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    log_file = open(csv_path, "a", newline="") if main_process else None
    log = csv.DictWriter(log_file, fieldnames=COLUMNS) if log_file else None

    def forward_teacher(batch):
        p_vis, p_ir = masked_sources(batch["vis_y"], batch["ir"], batch["masks_vis"], batch["masks_ir"])
        return teacher_ddp(batch["vis_y"], batch["ir"], p_vis, p_ir)

    def segmentation_term(fused_t, batch):
        if segmenter is None:
            return None
        return segmentation_loss(segmenter, fused_t, batch["cr"], batch["cb"], batch["label"])

    def step_optimizer(loss, optimizer, scaler, scheduler):
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()

    # loop
    started = time.time() - progress["seconds"]
    step, alternation_step = progress["step"], progress["alternation_step"]
    for epoch in range(progress["epoch"], config.epochs):
        warmup = epoch < config.teacher_warmup_epochs
        sampler.set_epoch(epoch)
        samples.set_epoch(epoch)
        bar = tqdm(loader, total=steps_per_epoch, disable=not (config.progress and main_process), leave=False,
                   desc=f"{'warm-up' if warmup else 'distill'} {epoch + 1}/{config.epochs}", unit="step")
        for batch in bar:
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            step += 1
            row = {c: "" for c in COLUMNS}
            with torch.autocast(device_type=device.type, dtype=torch.float16, enabled=use_amp):
                if warmup:  # 1. the teacher alone
                    phase = "warmup"
                    teacher_ddp.train()
                    fused_t, feats_t = forward_teacher(batch)
                    terms = teacher_loss(fused_t.float(), feats_t, batch["vis_y"], batch["ir"],
                                         segmentation=segmentation_term(fused_t.float(), batch))
                    row.update(_values(terms, "t_", TEACHER_TERMS))
                    step_optimizer(terms["total"], opt_t, scaler_t, sched_t)
                    row["lr"] = sched_t.get_last_lr()[0]
                elif alternation_step % 2 == 0:  # 2a. the student steps, the teacher frozen
                    phase = "student"
                    teacher_ddp.eval()
                    student_ddp.train()
                    with torch.no_grad():
                        fused_t, feats_t = forward_teacher(batch)
                    fused_s, feats_s = student_ddp(batch["vis_y"], batch["ir"])
                    terms = student_loss(fused_s.float(), feats_s, fused_t.float(), feats_t, batch["vis_y"],
                                         batch["ir"], batch["masks_vis"], batch["masks_ir"], phi)
                    row.update(_values(terms, "s_", STUDENT_TERMS))
                    step_optimizer(terms["total"], opt_s, scaler_s, sched_s)
                    row["lr"] = sched_s.get_last_lr()[0]
                else:  # 2b. the teacher steps with the student's feedback
                    phase = "teacher"
                    student_ddp.eval()
                    teacher_ddp.train()
                    with torch.no_grad():
                        fused_s, feats_s = student_ddp(batch["vis_y"], batch["ir"])
                    fused_t, feats_t = forward_teacher(batch)
                    terms = teacher_loss(fused_t.float(), feats_t, batch["vis_y"], batch["ir"], fused_s.float(),
                                         feats_s, batch["masks_vis"], batch["masks_ir"], phi,
                                         segmentation=segmentation_term(fused_t.float(), batch))
                    row.update(_values(terms, "t_", TEACHER_TERMS))
                    step_optimizer(terms["total"], opt_t, scaler_t, sched_t)
                    row["lr"] = sched_t.get_last_lr()[0]
            if not warmup:
                alternation_step += 1
            row.update(step=step, epoch=epoch + 1, phase=phase)
            rows.append(row)
            if log:
                log.writerow(row)
                log_file.flush()
            shown = {k[2:]: f"{v:.4g}" for k, v in row.items() if k[:2] in ("s_", "t_") and v != ""}
            bar.set_postfix({"phase": phase, **shown})
        progress = {"epoch": epoch + 1, "step": step, "alternation_step": alternation_step,
                    "seconds": time.time() - started}
        if main_process and ((epoch + 1) % config.checkpoint_every == 0 or epoch + 1 == config.epochs):
            save_checkpoint(out, models, optimizers, schedulers, asdict(config), progress)

    # save
    if log_file:
        log_file.close()
    summary = {"seconds": time.time() - started, "world_size": world, "steps": step,
               "student_parameters": parameter_count(student), "teacher_parameters": parameter_count(teacher),
               "pairs": [item.pair.stem for item in items], "l_cs": phi is not None,
               "segmentation_guidance": segmenter is not None, "device": str(device)}
    if world > 1:  # DDP keeps replicas identical: record the largest difference between ranks
        checksum = torch.tensor([sum(float(p.double().sum()) for p in student.parameters())], dtype=torch.float64)
        high, low = checksum.clone(), checksum.clone()
        dist.all_reduce(high, op=dist.ReduceOp.MAX)
        dist.all_reduce(low, op=dist.ReduceOp.MIN)
        summary["ddp_student_checksum_spread"] = float(high - low)
    for prefix, key in (("s_", "final_student"), ("t_", "final_teacher")):
        last = [r for r in rows if r[f"{prefix}total"] != ""]
        if last:
            summary[key] = {k[2:]: float(v) for k, v in last[-1].items() if k.startswith(prefix) and v != ""}
    if main_process:
        from safetensors.torch import save_file

        meta = {"trainer": "distill", "config": json.dumps(asdict(config))}
        save_student_safetensors(student.eval(), out / "student.safetensors", metadata=meta)
        with atomic_path(out / "teacher.safetensors") as tmp:
            save_file({k: v.detach().cpu().contiguous() for k, v in teacher.state_dict().items()}, str(tmp),
                      metadata={**meta, "teacher_width": str(config.teacher_width)})
        write_bytes_atomic(out / "config.json", json.dumps({"config": asdict(config), "summary": summary},
                                                           indent=1).encode())
        plot_losses(rows, out / "loss_curve.png")
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return out / "student.safetensors"
