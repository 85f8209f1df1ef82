"""IR/visible training pairs as tensors, with aligned random crops and flips.

Pairs come from ``sage_edge.pairs`` and pixels from ``sage_edge.imageio`` and
``sage_edge.colour``, exactly as the runtime reads them, so training sees what
deployment sees. Images smaller than the crop are scaled up to cover it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from sage_edge import colour
from sage_edge.errors import SageEdgeError
from sage_edge.imageio import read_ir, read_visible
from sage_edge.pairs import ImagePair, find_datasets


@dataclass
class LoadedPair:
    stem: str
    vis_y: np.ndarray  # H x W float32 [0, 1]
    ir: np.ndarray  # H x W float32 [0, 1]
    vis_bgr: np.ndarray  # H x W x 3 uint8


def load_pair(pair: ImagePair) -> LoadedPair:
    ir, vis = read_ir(pair.ir), read_visible(pair.vis)
    if vis.ndim == 2:
        vis = np.repeat(vis[..., None], 3, axis=2)
    if ir.shape != vis.shape[:2]:
        raise SageEdgeError(f"{pair.stem}: IR {ir.shape[::-1]} and visible {vis.shape[1::-1]} sizes differ")
    y_levels, _, _ = colour.ycrcb_from_bgr_image(vis)
    return LoadedPair(pair.stem, colour.to_unit(y_levels).astype(np.float32),
                      colour.to_unit(ir.astype(np.float32)), vis)


def dataset_pairs(data_dir: str | os.PathLike) -> list[ImagePair]:
    pairs = [p for ps in find_datasets(data_dir).values() for p in ps]
    if not pairs:
        raise SageEdgeError(f"{data_dir}: no IR/visible pairs")
    return pairs


def cover_crop(images: list[np.ndarray], crop_hw: tuple[int, int]) -> list[np.ndarray]:
    """Scale images (same H x W) up, if needed, so that a crop of ``crop_hw`` fits."""
    h, w = images[0].shape[:2]
    scale = max(crop_hw[0] / h, crop_hw[1] / w, 1.0)
    if scale == 1.0:
        return images
    size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
    return [cv2.resize(im, size, interpolation=cv2.INTER_LINEAR) for im in images]


class RandomCropPairs(Dataset):
    """Yields (vis_y, ir), each 1 x crop_h x crop_w, aligned crop and flip; ``samples_per_epoch`` draws."""

    def __init__(self, pairs: list[LoadedPair], crop_hw: tuple[int, int], samples_per_epoch: int, seed: int = 0,
                 hflip: bool = True) -> None:
        self.planes = [cover_crop([p.vis_y, p.ir], crop_hw) for p in pairs]
        self.crop_hw = crop_hw
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.hflip = hflip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.epoch, index))
        planes = self.planes[rng.integers(len(self.planes))]
        h, w = planes[0].shape
        ch, cw = self.crop_hw
        top, left = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
        crops = [p[top : top + ch, left : left + cw] for p in planes]
        if self.hflip and rng.random() < 0.5:
            crops = [c[:, ::-1] for c in crops]
        return tuple(torch.from_numpy(np.ascontiguousarray(c))[None] for c in crops)  # type: ignore[return-value]
