"""Segment Anything (SAM), loaded with or without torchvision.

``segment_anything`` imports torchvision in its package ``__init__`` (through
``automatic_mask_generator.py`` and ``utils/transforms.py``), and there is no
CPU torchvision on some machines (this one included). Exactly two things need it:

* ``automatic_mask_generator.py``: ``torchvision.ops.boxes.batched_nms`` and
  ``box_area`` (duplicate-mask removal by box NMS, within a crop, between crops
  and after small-region post-processing);
* ``utils/transforms.py`` (``ResizeLongestSide.apply_image``, used by
  ``SamPredictor.set_image``): ``torchvision.transforms.functional.resize`` and
  ``to_pil_image``, i.e. a PIL bilinear resize of an HxWx3 uint8 image.

``segment_anything_modules()`` returns the real package when it imports. When
torchvision is missing it loads segment_anything's own files with importlib,
WITHOUT running the package ``__init__``: ``modeling/`` (pure torch) as a
private package, and, for the mask generator, ``utils/amg.py``,
``utils/transforms.py``, ``predictor.py`` and ``automatic_mask_generator.py``.
While those last files execute, ``sys.modules`` holds a stand-in ``torchvision``
whose only contents are ``batched_nms``/``box_area`` below (pure torch, tested
against a brute-force NMS) and a PIL-based ``resize``/``to_pil_image`` (what
torchvision itself calls for PIL images); the stand-in is removed again
straight after, so nothing else can mistake it for torchvision. Everything
else the mask generator does (point grids, crops, stability score, RLE,
small-region removal with OpenCV) is segment_anything's unmodified code.

Images are fed to SAM as RGB, as SAM expects. (The published SAGE code fed
OpenCV's BGR arrays to SAM unchanged.)
"""
from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
import types
from functools import lru_cache, partial
from pathlib import Path

import torch
from torch import nn

from sage_edge.errors import SageEdgeError

# embed_dim of image_encoder.patch_embed.proj -> SAM variant; sizes from segment_anything/build_sam.py.
VARIANTS = {
    "vit_b": dict(embed_dim=768, depth=12, num_heads=12, global_attn_indexes=(2, 5, 8, 11)),
    "vit_l": dict(embed_dim=1024, depth=24, num_heads=16, global_attn_indexes=(5, 11, 17, 23)),
    "vit_h": dict(embed_dim=1280, depth=32, num_heads=16, global_attn_indexes=(7, 15, 23, 31)),
}
CHECKPOINT_URLS = {
    "vit_b": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth",
    "vit_l": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_l_0b3195.pth",
    "vit_h": "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth",
}
TINY_PREFIX = "tiny-random:"  # test fixture: "tiny-random:SEED" builds a small SAM with random weights


# --- torchvision stand-ins ------------------------------------------------------------------------


def box_area(boxes: torch.Tensor) -> torch.Tensor:
    """Area of N x 4 (x1, y1, x2, y2) boxes, as torchvision.ops.box_area."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: torch.Tensor, scores: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """Greedy NMS as torchvision.ops.nms: indices kept, by decreasing score; drops IoU > threshold."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    order = torch.argsort(scores, descending=True, stable=True)
    boxes = boxes[order].float()
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1) * (y2 - y1)
    ix1 = torch.maximum(x1[:, None], x1[None, :])
    iy1 = torch.maximum(y1[:, None], y1[None, :])
    ix2 = torch.minimum(x2[:, None], x2[None, :])
    iy2 = torch.minimum(y2[:, None], y2[None, :])
    inter = (ix2 - ix1).clamp(min=0) * (iy2 - iy1).clamp(min=0)
    iou = inter / (areas[:, None] + areas[None, :] - inter)
    overlaps = (iou > iou_threshold).cpu()
    suppressed = torch.zeros(len(order), dtype=torch.bool)
    keep = []
    for i in range(len(order)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return order[torch.tensor(keep, dtype=torch.int64, device=order.device)]


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, idxs: torch.Tensor, iou_threshold: float) -> torch.Tensor:
    """NMS per category (torchvision's coordinate trick: boxes of different categories never overlap)."""
    if boxes.numel() == 0:
        return torch.empty(0, dtype=torch.int64, device=boxes.device)
    offsets = idxs.to(boxes) * (boxes.max() + 1)
    return nms(boxes + offsets[:, None], scores, iou_threshold)


def _pil_resize(image, size):
    """torchvision.transforms.functional.resize for a PIL image: PIL bilinear to (h, w)."""
    from PIL import Image

    return image.resize((int(size[1]), int(size[0])), Image.BILINEAR)


def _to_pil_image(array):
    from PIL import Image

    return Image.fromarray(array)


def _restore_modules(saved: dict[str, types.ModuleType | None]) -> None:
    """Put ``sys.modules`` entries back as they were (None: the name was absent)."""
    for name, module in saved.items():
        if module is None:
            sys.modules.pop(name, None)
        else:
            sys.modules[name] = module


@contextlib.contextmanager
def _torchvision_stand_in():
    names = ["torchvision", "torchvision.ops", "torchvision.ops.boxes", "torchvision.transforms",
             "torchvision.transforms.functional"]
    saved = {n: sys.modules.get(n) for n in names}
    mods = {n: types.ModuleType(n) for n in names}
    mods["torchvision.ops.boxes"].batched_nms = batched_nms
    mods["torchvision.ops.boxes"].box_area = box_area
    mods["torchvision.transforms.functional"].resize = _pil_resize
    mods["torchvision.transforms.functional"].to_pil_image = _to_pil_image
    sys.modules.update(mods)
    try:
        yield
    finally:
        _restore_modules(saved)


# --- loading segment_anything -----------------------------------------------------------------------


def _package_dir() -> Path:
    spec = importlib.util.find_spec("segment_anything")
    if spec is None or not spec.submodule_search_locations:
        raise SageEdgeError("segment-anything is not installed: pip install 'sage-edge[train]'")
    return Path(list(spec.submodule_search_locations)[0])


def _load(name: str, path: Path, package: bool = False) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(
        name, path, submodule_search_locations=[str(path.parent)] if package else None)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@lru_cache(maxsize=None)
def segment_anything_modules(force_cpu_shim: bool = False) -> types.SimpleNamespace:
    """Namespace with ``modeling``, ``build_sam``, ``automatic_mask_generator`` and ``source``."""
    if not force_cpu_shim:
        try:
            import segment_anything  # noqa: F401 - imports torchvision

            # importlib, not "import a.b as c": the package re-exports a *function* named build_sam
            amg_mod = importlib.import_module("segment_anything.automatic_mask_generator")
            build_mod = importlib.import_module("segment_anything.build_sam")
            modeling = importlib.import_module("segment_anything.modeling")

            return types.SimpleNamespace(modeling=modeling, build_sam=build_mod, automatic_mask_generator=amg_mod,
                                         source="segment_anything")
        except ImportError as exc:
            if "torchvision" not in str(exc):
                raise
    root = _package_dir()
    private = "sage_edge_segment_anything"  # a private parent package: segment_anything's __init__ never runs
    if private not in sys.modules:
        parent = types.ModuleType(private)
        parent.__path__ = [str(root)]
        sys.modules[private] = parent
        utils = types.ModuleType(f"{private}.utils")
        utils.__path__ = [str(root / "utils")]
        sys.modules[f"{private}.utils"] = utils
    modeling = sys.modules.get(f"{private}.modeling") or _load(f"{private}.modeling", root / "modeling" / "__init__.py",
                                                               package=True)
    build_mod = sys.modules.get(f"{private}.build_sam") or _load(f"{private}.build_sam", root / "build_sam.py")
    amg_mod = sys.modules.get(f"{private}.automatic_mask_generator")
    if amg_mod is None:
        # predictor.py imports "segment_anything.modeling" by absolute name: point it at the private copy meanwhile.
        aliases = {"segment_anything": sys.modules[private], "segment_anything.modeling": modeling}
        saved = {n: sys.modules.get(n) for n in aliases}
        sys.modules.update(aliases)
        try:
            with _torchvision_stand_in():
                _load(f"{private}.utils.amg", root / "utils" / "amg.py")
                _load(f"{private}.utils.transforms", root / "utils" / "transforms.py")
                _load(f"{private}.predictor", root / "predictor.py")
                amg_mod = _load(f"{private}.automatic_mask_generator", root / "automatic_mask_generator.py")
        finally:
            _restore_modules(saved)
    return types.SimpleNamespace(modeling=modeling, build_sam=build_mod, automatic_mask_generator=amg_mod,
                                 source="modeling files without torchvision (pure-torch batched_nms, PIL resize)")


# --- building SAM -----------------------------------------------------------------------------------


def build_tiny_sam(seed: int = 0, image_size: int = 256) -> nn.Module:
    """A small SAM with random weights, from segment_anything's own modules (a test fixture, not a model).

    Same structure as the real one (16-pixel patches, windowed + global attention, relative
    positions, 3 multimask outputs), 32 channels wide and 2 blocks deep.
    """
    m = segment_anything_modules().modeling
    torch.manual_seed(seed)
    dim, patch = 32, 16
    grid = image_size // patch
    sam = m.Sam(
        image_encoder=m.ImageEncoderViT(
            img_size=image_size, patch_size=patch, embed_dim=dim, depth=2, num_heads=2, mlp_ratio=2.0,
            out_chans=dim, qkv_bias=True, norm_layer=partial(nn.LayerNorm, eps=1e-6), use_rel_pos=True,
            window_size=4, global_attn_indexes=(1,)),
        prompt_encoder=m.PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid),
                                       input_image_size=(image_size, image_size), mask_in_chans=4),
        mask_decoder=m.MaskDecoder(
            num_multimask_outputs=3,
            transformer=m.TwoWayTransformer(depth=1, embedding_dim=dim, mlp_dim=64, num_heads=2),
            transformer_dim=dim, iou_head_depth=2, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )
    return sam.eval()


def detect_variant(state: dict) -> str | None:
    weight = state.get("image_encoder.patch_embed.proj.weight")
    if weight is None:
        return None
    for name, spec in VARIANTS.items():
        if weight.shape[0] == spec["embed_dim"]:
            return name
    return f"unknown (embed_dim {weight.shape[0]})"


def load_sam(checkpoint: str | os.PathLike, model_type: str = "vit_b", device: str | torch.device = "cpu") -> nn.Module:
    """SAM in eval mode from a published checkpoint (sam_vit_b_01ec64.pth ...), or ``tiny-random:SEED``."""
    spec = str(checkpoint)
    if spec.startswith(TINY_PREFIX):
        try:
            seed = int(spec[len(TINY_PREFIX):] or 0)
        except ValueError:
            raise SageEdgeError(f"{spec}: expected tiny-random:SEED with an integer SEED") from None
        return build_tiny_sam(seed).to(device)
    if model_type not in VARIANTS:
        raise SageEdgeError(f"unknown SAM model type '{model_type}'; use one of {', '.join(VARIANTS)}")
    path = Path(spec)
    if not path.is_file():
        raise SageEdgeError(f"{path}: no such SAM checkpoint (download {CHECKPOINT_URLS[model_type]})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is one line for the user
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SageEdgeError(f"{path}: cannot read SAM checkpoint ({first[:160]})") from None
    if not isinstance(state, dict):
        raise SageEdgeError(f"{path}: not a SAM checkpoint (not a state_dict)")
    variant = detect_variant(state)
    if variant is None:
        raise SageEdgeError(f"{path}: not a SAM checkpoint (no image_encoder.patch_embed.proj.weight)")
    if variant != model_type:
        raise SageEdgeError(f"{path}: this is a SAM {variant} checkpoint, but the model type is {model_type} "
                            f"(pass --model-type {variant})")
    # segment_anything's registry builds the model; weights are loaded here with weights_only=True.
    sam = segment_anything_modules().build_sam.sam_model_registry[model_type](checkpoint=None)
    try:
        sam.load_state_dict(state)
    except RuntimeError as exc:
        raise SageEdgeError(f"{path}: SAM {model_type} weights do not fit ({str(exc).splitlines()[0][:160]})") from None
    return sam.eval().to(device)


class TruncatedEncoder(nn.Module):
    """Φ: SAM's image encoder cut after its first ``blocks`` blocks; no neck, frozen.

    Input: B x 1 x H x W grey in [0, 1] (repeated to 3 channels, no mean/std), H and W multiples of the
    patch size work best (others are cropped by the patch conv). The absolute position embedding is
    cropped to the top-left token grid, which is what SAM itself sees for an image padded to 1024
    (it pads bottom-right); when the grid is larger than the embedding it is resized bilinearly.
    Output: a list of ``blocks`` tensors B x C x h x w (one per block).
    """

    def __init__(self, image_encoder: nn.Module, blocks: int = 2) -> None:
        super().__init__()
        self.patch_embed = image_encoder.patch_embed
        self.pos_embed = image_encoder.pos_embed
        self.blocks = nn.ModuleList(list(image_encoder.blocks)[:blocks])
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> "TruncatedEncoder":
        return super().train(False)  # always frozen

    def forward(self, grey: torch.Tensor) -> list[torch.Tensor]:
        x = self.patch_embed(grey.expand(-1, 3, -1, -1))  # B x h x w x C
        if self.pos_embed is not None:
            h, w = x.shape[1:3]
            pos = self.pos_embed
            if pos.shape[1] >= h and pos.shape[2] >= w:
                pos = pos[:, :h, :w]
            else:
                pos = nn.functional.interpolate(pos.permute(0, 3, 1, 2), size=(h, w), mode="bilinear",
                                                align_corners=False).permute(0, 2, 3, 1)
            x = x + pos
        features = []
        for block in self.blocks:
            x = block(x)
            features.append(x.permute(0, 3, 1, 2))
        return features
