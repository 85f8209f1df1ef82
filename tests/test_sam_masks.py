"""SAM without torchvision: the stand-in NMS, segment_anything's own mask generator on CPU, the mask cache."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from sage_edge.errors import SageEdgeError
from sage_edge.train import mask_cache, sam


pytestmark = pytest.mark.usefixtures("torch_one_thread")


def reference_nms(boxes: np.ndarray, scores: np.ndarray, categories: np.ndarray, threshold: float) -> list[int]:
    """Brute-force greedy NMS per category, straight from the definition."""
    keep: list[int] = []
    for i in sorted(range(len(boxes)), key=lambda i: (-scores[i], i)):
        ok = True
        for j in keep:
            if categories[j] != categories[i]:
                continue
            a, b = boxes[i], boxes[j]
            iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
            ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
            inter = iw * ih
            union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
            if inter / union > threshold:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", range(5))
def test_batched_nms_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = 60
    xy = rng.uniform(0, 100, (n, 2))
    wh = rng.uniform(5, 40, (n, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n  # distinct scores: a unique answer
    categories = rng.integers(0, 3 if seed % 2 else 1, n)
    for threshold in (0.3, 0.7):
        got = sam.batched_nms(torch.from_numpy(boxes), torch.from_numpy(scores), torch.from_numpy(categories), threshold)
        assert got.tolist() == reference_nms(boxes, scores, categories, threshold)
    assert torch.allclose(sam.box_area(torch.from_numpy(boxes)), torch.from_numpy(wh[:, 0] * wh[:, 1]).float())
    assert sam.batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0), 0.5).numel() == 0


def test_segment_anything_loads_without_torchvision():
    modules = sam.segment_anything_modules()
    generator_file = Path(modules.automatic_mask_generator.__file__)
    assert generator_file.name == "automatic_mask_generator.py" and generator_file.parent.name == "segment_anything"
    if modules.source != "segment_anything":
        assert modules.automatic_mask_generator.batched_nms is sam.batched_nms
        # the stand-in is gone again: nothing else can mistake it for torchvision
        assert "torchvision" not in sys.modules
        assert "segment_anything" not in sys.modules or hasattr(sys.modules["segment_anything"], "sam_model_registry")


def _blobs(h=96, w=128):
    image = np.full((h, w, 3), 30, np.uint8)
    cv2.rectangle(image, (10, 10), (60, 50), (220, 200, 180), -1)
    cv2.circle(image, (95, 65), 20, (90, 160, 240), -1)
    return image


def test_mask_generator_logic_runs_on_cpu():
    """segment_anything's own generator (crops, crop NMS, stability, RLE, small-region removal + NMS)."""
    tiny = sam.build_tiny_sam(seed=3)
    params = mask_cache.MaskParams(points_per_side=4, points_per_batch=16, pred_iou_thresh=0.0,
                                   stability_score_thresh=0.0, crop_n_layers=1, min_mask_region_area=50, keep=3)
    generator = mask_cache.make_generator(tiny, params)
    image = _blobs()
    records = generator.generate(mask_cache.sam_rgb(image))
    assert records and all(r["segmentation"].shape == image.shape[:2] for r in records)
    masks = mask_cache.largest_masks(records, params.keep, image.shape[:2])
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    assert len(masks) == min(3, len(records)) and list(areas) == sorted(areas, reverse=True)
    assert areas[0] == max(r["area"] for r in records)


def test_published_generator_parameters():
    p = mask_cache.MaskParams()
    assert (p.points_per_side, p.pred_iou_thresh, p.stability_score_thresh, p.crop_n_layers,
            p.crop_n_points_downscale_factor, p.min_mask_region_area, p.keep) == (128, 0.86, 0.92, 1, 2, 100, 20)


def test_sam_is_fed_rgb():
    bgr = np.zeros((2, 2, 3), np.uint8)
    bgr[..., 0] = 255  # blue in OpenCV order
    assert mask_cache.sam_rgb(bgr)[0, 0].tolist() == [0, 0, 255]
    assert mask_cache.sam_rgb(np.full((2, 2), 7, np.uint8)).shape == (2, 2, 3)


def test_mask_files_round_trip_without_pickle(tmp_path):
    rng = np.random.default_rng(0)
    masks = rng.random((5, 17, 23)) > 0.5  # odd sizes: bit padding
    path = tmp_path / "m.npz"
    mask_cache.save_masks(path, masks, mask_cache.MaskParams())
    assert np.array_equal(mask_cache.load_masks(path), masks)
    with np.load(path, allow_pickle=False) as data:
        assert data["packed"].dtype == np.uint8 and data["packed"].size == (5 * 17 * 23 + 7) // 8
        assert all(data[k].dtype != object for k in data.files)
    top = mask_cache.top_masks(masks[:2], 4)
    assert top.shape == (4, 17, 23) and np.array_equal(top[:2], masks[:2]) and top[2:].all()  # padded: whole image
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(SageEdgeError, match="not a SAM mask file"):
        mask_cache.load_masks(tmp_path / "bad.npz")


def _tiny_dataset(root: Path, n=2, size=(48, 64)) -> Path:
    from sage_edge.samples import synthetic_pair

    for sub in ("ir", "vis"):
        (root / "set" / sub).mkdir(parents=True)
    for i in range(n):
        ir, vis = synthetic_pair(*size, seed=i)
        cv2.imwrite(str(root / "set" / "ir" / f"{i:03d}.png"), ir)
        cv2.imwrite(str(root / "set" / "vis" / f"{i:03d}.png"), vis)
    return root


def test_cache_is_resumable(tmp_path):
    data = _tiny_dataset(tmp_path / "data")
    cache = tmp_path / "cache"
    params = mask_cache.MaskParams(points_per_side=2, points_per_batch=8, pred_iou_thresh=0.0,
                                   stability_score_thresh=0.0, crop_n_layers=0, min_mask_region_area=0)
    tiny = sam.build_tiny_sam(0)
    first = mask_cache.build_cache(data, cache, tiny, params, progress=False)
    assert first["computed"] == 4 and first["skipped"] == 0
    files = sorted(cache.rglob("*.npz"))
    assert [f.relative_to(cache).as_posix() for f in files] == [
        "set/ir/000.npz", "set/ir/001.npz", "set/vis/000.npz", "set/vis/001.npz"]
    files[0].unlink()
    again = mask_cache.build_cache(data, cache, tiny, params, progress=False)
    assert again["computed"] == 1 and again["skipped"] == 3  # a crash loses at most one image
    changed = mask_cache.build_cache(data, cache, tiny, mask_cache.MaskParams(
        points_per_side=2, points_per_batch=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, crop_n_layers=0,
        min_mask_region_area=0, keep=5), progress=False)
    assert changed["computed"] == 4  # other parameters: recomputed, not silently reused


def test_truncated_encoder_is_frozen_and_sized():
    tiny = sam.build_tiny_sam(0)
    phi = sam.TruncatedEncoder(tiny.image_encoder, blocks=2)
    x = torch.rand(1, 1, 64, 96, requires_grad=True)
    feats = phi(x)
    assert [f.shape for f in feats] == [(1, 32, 4, 6)] * 2  # 16-px patches, native size, no neck
    feats[-1].sum().backward()
    assert x.grad is not None and not any(p.requires_grad for p in phi.parameters())
    assert phi.train().training is False


def test_load_sam_errors(tmp_path):
    with pytest.raises(SageEdgeError, match="no such SAM checkpoint"):
        sam.load_sam(tmp_path / "sam_vit_b_01ec64.pth")
    vit_h = {"image_encoder.patch_embed.proj.weight": torch.zeros(1280, 3, 1, 1)}
    torch.save(vit_h, tmp_path / "h.pth")
    with pytest.raises(SageEdgeError, match="SAM vit_h checkpoint, but the model type is vit_b"):
        sam.load_sam(tmp_path / "h.pth", "vit_b")
    torch.save({"foo": torch.zeros(1)}, tmp_path / "other.pth")
    with pytest.raises(SageEdgeError, match="not a SAM checkpoint"):
        sam.load_sam(tmp_path / "other.pth")
    with pytest.raises(SageEdgeError, match="tiny-random:SEED"):
        sam.load_sam("tiny-random:x")


def run_cli(*args, env=None):
    """The CLI in this process (click's runner): same exit codes and stderr, no interpreter start-up."""
    from click.testing import CliRunner

    from sage_edge.cli import main

    result = CliRunner().invoke(main, [str(a) for a in args])
    result.returncode = result.exit_code
    return result


def _one_line_error(done):
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_cli_bad_sam_checkpoints(tmp_path):
    data = _tiny_dataset(tmp_path / "data", n=1)
    line = _one_line_error(run_cli("train", "masks", "--data", data, "--sam-checkpoint", tmp_path / "missing.pth"))
    assert "no such SAM checkpoint" in line
    torch.save({"image_encoder.patch_embed.proj.weight": torch.zeros(1024, 3, 1, 1)}, tmp_path / "l.pth")
    line = _one_line_error(run_cli("train", "masks", "--data", data, "--sam-checkpoint", tmp_path / "l.pth"))
    assert "vit_l" in line
    assert not (data / "sam_masks").exists()  # no partial output
    empty = tmp_path / "empty"
    (empty / "ir").mkdir(parents=True)
    (empty / "vis").mkdir()
    line = _one_line_error(run_cli("train", "masks", "--data", empty, "--sam-checkpoint", "tiny-random:0"))
    assert "pairs" in line or "no " in line


def test_cli_masks_with_tiny_sam(tmp_path):
    data = _tiny_dataset(tmp_path / "data", n=1)
    done = run_cli("train", "masks", "--data", data, "--sam-checkpoint", "tiny-random:0", "--points-per-side", "2",
                   "--pred-iou-thresh", "0", "--stability-score-thresh", "0", "--crop-n-layers", "0",
                   env={"OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert "2 computed" in done.stdout
    masks = mask_cache.load_masks(data / "sam_masks" / "set" / "ir" / "000.npz")
    assert masks.shape[1:] == (48, 64) and masks.dtype == bool
