"""IR/visible training pairs as tensors, with aligned random crops and flips.

Pairs come from ``sage_edge.pairs`` and pixels from ``sage_edge.imageio`` and
``sage_edge.colour``, exactly as the runtime reads them, so training sees what
deployment sees. Images smaller than the crop are scaled up to cover it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

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


def cover_crop(images: list[np.ndarray], crop_hw: tuple[int, int],
               interpolation: int = cv2.INTER_LINEAR) -> list[np.ndarray]:
    """Scale images (same H x W) up, if needed, so that a crop of ``crop_hw`` fits."""
    h, w = images[0].shape[:2]
    scale = max(crop_hw[0] / h, crop_hw[1] / w, 1.0)
    if scale == 1.0:
        return images
    size = (int(np.ceil(w * scale)), int(np.ceil(h * scale)))
    return [cv2.resize(im, size, interpolation=interpolation) for im in images]


class SeededAlignedCrops(Dataset):
    """Deterministic random crops: draw ``index`` of epoch ``e`` always picks the same source, window and flip.

    Subclasses hold their sources (lists of same-size H x W[...] arrays) and call ``_draw``, which returns
    the chosen source and a function cutting that window (flipped when drawn) out of any of its arrays.
    """

    def __init__(self, crop_hw: tuple[int, int], samples_per_epoch: int, seed: int, hflip: bool) -> None:
        self.crop_hw = crop_hw
        self.samples_per_epoch = samples_per_epoch
        self.seed = seed
        self.hflip = hflip
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.samples_per_epoch

    def _draw(self, index: int, sources: list, height_width: Callable[[object], tuple[int, int]]):
        rng = np.random.default_rng((self.seed, self.epoch, index))
        source = sources[rng.integers(len(sources))]
        h, w = height_width(source)
        ch, cw = self.crop_hw
        top, left = rng.integers(h - ch + 1), rng.integers(w - cw + 1)
        flip = self.hflip and rng.random() < 0.5

        def cut(array: np.ndarray) -> np.ndarray:
            window = array[top : top + ch, left : left + cw]
            return np.ascontiguousarray(window[:, ::-1] if flip else window)

        return source, cut


class RandomCropPairs(SeededAlignedCrops):
    """Yields (vis_y, ir), each 1 x crop_h x crop_w, aligned crop and flip; ``samples_per_epoch`` draws."""

    def __init__(self, pairs: list[LoadedPair], crop_hw: tuple[int, int], samples_per_epoch: int, seed: int = 0,
                 hflip: bool = True) -> None:
        super().__init__(crop_hw, samples_per_epoch, seed, hflip)
        self.planes = [cover_crop([p.vis_y, p.ir], crop_hw) for p in pairs]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        planes, cut = self._draw(index, self.planes, lambda planes: planes[0].shape)
        return tuple(torch.from_numpy(cut(p))[None] for p in planes)  # type: ignore[return-value]


# --- distillation samples: pairs + SAM masks (+ optional labels) --------------------------------


@dataclass
class DistillItem:
    pair: LoadedPair
    masks_vis: np.ndarray  # 4 x H x W uint8 {0, 1}: SAM's 4 largest masks, padded with whole-image masks
    masks_ir: np.ndarray
    label: np.ndarray | None  # H x W int64 class ids, or None


def load_distill_items(data_dir: str | os.PathLike, mask_cache: str | os.PathLike | None,
                       max_pairs: int | None = None, with_labels: bool = True) -> list[DistillItem]:
    """Every pair under ``data_dir`` with its cached SAM masks (whole-image masks when mask_cache is None)."""
    from sage_edge.train.mask_cache import load_masks, mask_path, top_masks
    from sage_edge.train.segmentation import find_label, load_label

    datasets = find_datasets(data_dir)
    jobs = [(name, pair) for name, pairs in datasets.items() for pair in pairs]
    if not jobs:
        raise SageEdgeError(f"{data_dir}: no IR/visible pairs")
    if max_pairs:
        jobs = jobs[:max_pairs]
    items = []
    for name, pair in jobs:
        loaded = load_pair(pair)
        hw = loaded.ir.shape
        masks = {}
        for modality in ("vis", "ir"):
            if mask_cache is None:
                masks[modality] = np.ones((4, *hw), dtype=np.uint8)
                continue
            path = mask_path(mask_cache, name, modality, pair.stem)
            if not path.is_file():
                raise SageEdgeError(f"{path}: no SAM masks for {name}/{pair.stem}; run `sage-edge train masks "
                                    f"--data {data_dir} --cache {mask_cache} --sam-checkpoint SAM.pth` first")
            cached = load_masks(path)
            if cached.shape[1:] != hw:
                raise SageEdgeError(f"{path}: masks are {cached.shape[2]}x{cached.shape[1]}, "
                                    f"image is {hw[1]}x{hw[0]} (stale cache?)")
            masks[modality] = top_masks(cached, 4)
        label = None
        if with_labels:
            label_path = find_label(pair.ir.parent.parent, pair.stem)
            if label_path is not None:
                label = load_label(label_path, hw)
        items.append(DistillItem(loaded, masks["vis"], masks["ir"], label))
    return items


class RandomCropDistill(SeededAlignedCrops):
    """Aligned random crops + flip of Y, IR, Cr, Cb, both mask stacks and the label; a dict per sample.

    Keys: vis_y, ir, cr, cb (1 x h x w float [0, 1]), masks_vis, masks_ir (4 x h x w float {0, 1}),
    label (h x w int64; 255 = ignore, all 255 when the pair has no label).
    """

    def __init__(self, items: list[DistillItem], crop_hw: tuple[int, int], samples_per_epoch: int, seed: int = 0,
                 hflip: bool = True) -> None:
        super().__init__(crop_hw, samples_per_epoch, seed, hflip)
        self.items = []
        for item in items:
            _, cr, cb = colour.ycrcb_from_bgr_image(item.pair.vis_bgr)
            planes = cover_crop([item.pair.vis_y, item.pair.ir, colour.to_unit(cr).astype(np.float32),
                                 colour.to_unit(cb).astype(np.float32)], crop_hw)
            label = item.label if item.label is not None else np.full(item.pair.ir.shape, 255, np.int64)
            nearest = cover_crop([np.ascontiguousarray(item.masks_vis.transpose(1, 2, 0)),
                                  np.ascontiguousarray(item.masks_ir.transpose(1, 2, 0)),
                                  label.astype(np.int32)], crop_hw, interpolation=cv2.INTER_NEAREST)
            self.items.append((planes, nearest))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        (planes, nearest), cut = self._draw(index, self.items, lambda item: item[0][0].shape)
        t = torch.from_numpy
        vis_y, ir, cr, cb = (t(cut(p))[None] for p in planes)
        masks_vis, masks_ir, label = (cut(a) for a in nearest)
        return {"vis_y": vis_y, "ir": ir, "cr": cr, "cb": cb,
                "masks_vis": t(masks_vis.transpose(2, 0, 1)).float(), "masks_ir": t(masks_ir.transpose(2, 0, 1)).float(),
                "label": t(label).long()}
