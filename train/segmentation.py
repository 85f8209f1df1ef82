"""Pluggable segmentation guidance for the teacher (0.3·CE(seg(RGB(T)), labels)).

The published code runs a frozen open-vocabulary segmenter on the fused RGB image against dataset
labels. Here the segmenter is yours:

* a TorchScript file (``torch.jit.save``), or
* a Python entry point ``"package.module:function"``: a callable mapping RGB to logits,

either way ``B x 3 x H x W`` RGB in [0, 1] -> ``B x K x H x W`` logits (other sizes are resized
bilinearly to the labels). It is frozen (no parameter updates), but gradients flow through it to
the teacher. Labels live in a ``labels/`` folder beside ``ir/`` and ``vis/``: one single-channel
PNG per stem whose pixel values ARE the class ids (0..K-1; 255 = ignore). They are not divided by
255 (the published loader did that, turning every id into 0). Guidance is off when the segmenter
or the labels are absent.
"""
from __future__ import annotations

import importlib
import os
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from sage_edge import colour
from sage_edge.errors import SageEdgeError

LABEL_DIR_NAMES = ("labels", "label", "Label", "seg", "segmentation")
LABEL_SUFFIXES = (".png", ".bmp", ".tif", ".tiff")
IGNORE_INDEX = 255


def load_segmenter(spec: str | os.PathLike, device: str | torch.device = "cpu"):
    """A frozen callable RGB -> logits from a TorchScript file or a ``module:function`` entry point."""
    text = str(spec)
    path = Path(text)
    if path.is_file():
        try:
            model = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # noqa: BLE001
            raise SageEdgeError(f"{path}: not a TorchScript segmenter ({str(exc).splitlines()[0][:120]})") from None
    elif ":" in text and not path.exists():
        module_name, _, attribute = text.partition(":")
        try:
            model = getattr(importlib.import_module(module_name), attribute)
        except (ImportError, AttributeError) as exc:
            raise SageEdgeError(f"{text}: cannot import segmenter entry point ({exc})") from None
        if not callable(model):
            raise SageEdgeError(f"{text}: segmenter entry point is not callable")
    else:
        raise SageEdgeError(f"{text}: no such segmenter (a TorchScript file or module:function)")
    if isinstance(model, torch.nn.Module):
        model = model.to(device).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
    return model


def label_folder(dataset_dir: str | os.PathLike) -> Path | None:
    for name in LABEL_DIR_NAMES:
        folder = Path(dataset_dir) / name
        if folder.is_dir():
            return folder
    return None


def find_label(dataset_dir: str | os.PathLike, stem: str) -> Path | None:
    folder = label_folder(dataset_dir)
    if folder is None:
        return None
    for suffix in LABEL_SUFFIXES:
        if (folder / f"{stem}{suffix}").is_file():
            return folder / f"{stem}{suffix}"
    return None


def load_label(path: str | os.PathLike, image_hw: tuple[int, int]) -> np.ndarray:
    """H x W int64 class ids, exactly the PNG's values; one-line error on a wrong size or colour labels."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise SageEdgeError(f"{path}: cannot read label image")
    if label.ndim == 3:
        if not all(np.array_equal(label[..., 0], label[..., c]) for c in range(1, label.shape[2])):
            raise SageEdgeError(f"{path}: labels must be single-channel class ids, not a colour image")
        label = label[..., 0]
    if label.shape != tuple(image_hw):
        raise SageEdgeError(f"{path}: label is {label.shape[1]}x{label.shape[0]}, "
                            f"but its image is {image_hw[1]}x{image_hw[0]}")
    return label.astype(np.int64)


def rgb_from_fused(fused_y: torch.Tensor, cr: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """RGB(T): fused Y with the visible Cr/Cb through SAGE's inverse (sage_edge.colour), clamped to [0, 1]."""
    b, g, r = colour.ycrcb_unit_to_bgr(fused_y, cr, cb)
    return torch.cat([r, g, b], dim=1).clamp(0.0, 1.0)


def segmentation_loss(segmenter, fused_y: torch.Tensor, cr: torch.Tensor, cb: torch.Tensor,
                      labels: torch.Tensor) -> torch.Tensor:
    """CE(seg(RGB(T)), labels); ``labels`` N x H x W int64 (255 ignored)."""
    logits = segmenter(rgb_from_fused(fused_y, cr, cb))
    if logits.shape[-2:] != labels.shape[-2:]:
        logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    if not (labels != IGNORE_INDEX).any():
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), labels, ignore_index=IGNORE_INDEX)
