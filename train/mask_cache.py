"""SAM mask cache: SAM's automatic masks for every IR and visible image, computed once.

Layout: ``CACHE/<dataset>/<ir|vis>/<stem>.npz``, one compressed file per image, so a crash loses at
most one image and a rerun skips what is done. Each file holds plain arrays (never pickle):

* ``packed``: uint8, ``np.packbits`` of the N x H x W boolean masks (flattened, little bit order);
* ``shape``: int64 [N, H, W];
* ``areas``: int64 [N], largest first;
* ``params``: the generator parameters as a JSON string (a numpy unicode scalar).

Published parameters (SAGE with SAM ViT-B): points_per_side=128, pred_iou_thresh=0.86,
stability_score_thresh=0.92, crop_n_layers=1, crop_n_points_downscale_factor=2,
min_mask_region_area=100; the 20 largest masks are kept, sorted by area.
"""
from __future__ import annotations

import io
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from sage_edge.atomic import write_bytes_atomic
from sage_edge.errors import SageEdgeError
from sage_edge.imageio import read_ir, read_visible
from sage_edge.pairs import find_datasets

MODALITIES = ("ir", "vis")


@dataclass(frozen=True)
class MaskParams:
    points_per_side: int = 128
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.86
    stability_score_thresh: float = 0.92
    crop_n_layers: int = 1
    crop_n_points_downscale_factor: int = 2
    min_mask_region_area: int = 100
    keep: int = 20  # largest masks kept per image

    def generator_kwargs(self) -> dict:
        kwargs = asdict(self)
        kwargs.pop("keep")
        return kwargs


def make_generator(sam, params: MaskParams = MaskParams()):
    """segment_anything's SamAutomaticMaskGenerator (its CPU form when torchvision is missing; see sam.py)."""
    from sage_edge.train.sam import segment_anything_modules

    return segment_anything_modules().automatic_mask_generator.SamAutomaticMaskGenerator(
        sam, **params.generator_kwargs())


def sam_rgb(image: np.ndarray) -> np.ndarray:
    """H x W grey (IR) or H x W x 3 BGR -> H x W x 3 RGB uint8, what SAM expects.

    The published SAGE code passed OpenCV's BGR arrays to SAM; SAM was trained on RGB.
    """
    if image.ndim == 2:
        return np.repeat(image[..., None], 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def largest_masks(records: list[dict], keep: int, shape: tuple[int, int]) -> np.ndarray:
    """SAM records -> N x H x W bool, the ``keep`` largest by area (ties: generator order)."""
    records = sorted(records, key=lambda r: -int(r["area"]))[:keep]
    if not records:
        return np.zeros((0, *shape), dtype=bool)
    return np.stack([np.asarray(r["segmentation"], dtype=bool) for r in records])


def encode_masks(masks: np.ndarray, params: MaskParams) -> bytes:
    masks = np.asarray(masks, dtype=bool)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, packed=np.packbits(masks.reshape(-1), bitorder="little"),
                        shape=np.array(masks.shape, dtype=np.int64),
                        areas=masks.reshape(masks.shape[0], -1).sum(axis=1).astype(np.int64),
                        params=np.array(json.dumps(asdict(params), sort_keys=True)))
    return buffer.getvalue()


def save_masks(path: str | os.PathLike, masks: np.ndarray, params: MaskParams) -> None:
    write_bytes_atomic(path, encode_masks(masks, params))


def load_masks(path: str | os.PathLike) -> np.ndarray:
    """N x H x W bool masks, largest first."""
    try:
        with np.load(path, allow_pickle=False) as data:
            shape = tuple(int(v) for v in data["shape"])
            bits = np.unpackbits(data["packed"], count=int(np.prod(shape)), bitorder="little")
    except (OSError, KeyError, ValueError) as exc:
        raise SageEdgeError(f"{path}: not a SAM mask file ({str(exc).splitlines()[0][:120]})") from None
    return bits.reshape(shape).astype(bool)


def load_params(path: str | os.PathLike) -> dict | None:
    try:
        with np.load(path, allow_pickle=False) as data:
            return json.loads(str(data["params"]))
    except Exception:  # noqa: BLE001 - unreadable: treat as not done
        return None


def mask_path(cache: str | os.PathLike, dataset: str, modality: str, stem: str) -> Path:
    return Path(cache) / dataset / modality / f"{stem}.npz"


def default_cache(data: str | os.PathLike) -> Path:
    return Path(data) / "sam_masks"


def build_cache(data: str | os.PathLike, cache: str | os.PathLike, sam, params: MaskParams = MaskParams(),
                progress: bool = True) -> dict:
    """Masks for every image under ``data``; resumable (files with the same params are skipped)."""
    datasets = find_datasets(data)
    jobs = [(name, pair, modality) for name, pairs in datasets.items() for pair in pairs for modality in MODALITIES]
    if not jobs:
        raise SageEdgeError(f"{data}: no IR/visible pairs")
    wanted = asdict(params)
    generator = make_generator(sam, params)
    done = skipped = 0
    counts = []
    bar = tqdm(jobs, desc="SAM masks", unit="img", disable=not progress)
    for name, pair, modality in bar:
        out = mask_path(cache, name, modality, pair.stem)
        if out.is_file() and load_params(out) == wanted:
            skipped += 1
            continue
        image = read_ir(pair.ir) if modality == "ir" else read_visible(pair.vis)
        masks = largest_masks(generator.generate(sam_rgb(image)), params.keep, image.shape[:2])
        save_masks(out, masks, params)
        done += 1
        counts.append(len(masks))
        bar.set_postfix(image=f"{name}/{pair.stem}/{modality}", masks=len(masks))
    return {"images": len(jobs), "computed": done, "skipped": skipped, "cache": str(cache),
            "mean_masks": float(np.mean(counts)) if counts else None}


def top_masks(masks: np.ndarray, count: int = 4) -> np.ndarray:
    """The ``count`` largest masks as count x H x W uint8, padded with whole-image masks (all ones)."""
    h, w = masks.shape[1:]
    out = np.ones((count, h, w), dtype=np.uint8)
    n = min(count, len(masks))
    out[:n] = masks[:n]
    return out
