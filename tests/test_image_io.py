"""Image reading conventions, 16-bit thermal normalisation, and pairing by stem."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from sage_edge import imageio, pairs, thermal
from sage_edge.errors import SageEdgeError


def test_16bit_ir_uses_1_99_percentile_stretch(tmp_path):
    counts = np.linspace(20000, 30000, 100 * 100).reshape(100, 100).astype(np.uint16)
    counts[0, 0] = 65535  # one hot pixel must not flatten the picture
    path = tmp_path / "ir16.png"
    cv2.imwrite(str(path), counts)
    ir = imageio.read_ir(path)
    lo, hi = np.percentile(counts, [1, 99])
    expected = np.floor(((counts.astype(np.float32) - lo) * 255 / (hi - lo)).clip(0, 255) + 0.5)
    assert ir.dtype == np.uint8 and np.array_equal(ir, expected.astype(np.uint8))
    assert ir[0, 0] == 255 and (ir == 0).mean() == pytest.approx(0.01, abs=0.002)


def test_thermal_smoothing_damps_bound_jumps():
    norm = thermal.ThermalNormaliser(smoothing=0.9)
    frame = np.linspace(1000, 2000, 10000).reshape(100, 100).astype(np.uint16)
    first = norm(frame)
    with_hot_object = frame.copy()
    with_hot_object[:10] = 6000  # a hot engine enters: the 99th percentile jumps from ~2000 to 6000
    smoothed, unsmoothed = norm(with_hot_object), thermal.normalise_ir(with_hot_object)
    background = slice(10, None)
    flicker_smoothed = np.abs(smoothed[background].astype(int) - first[background]).mean()
    flicker_unsmoothed = np.abs(unsmoothed[background].astype(int) - first[background]).mean()
    assert flicker_smoothed < 0.5 * flicker_unsmoothed  # bounds moved 10 % of the way, not all of it
    assert thermal.normalise_ir(np.full((4, 4), 7, np.uint16)).max() == 0  # a flat frame is black, not NaN


def test_ir_and_visible_channel_handling(tmp_path):
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    bgr = np.dstack([grey, grey, grey])
    bgra = np.dstack([grey, grey, grey, np.full_like(grey, 255)])
    for name, image in (("g.png", grey), ("bgr.png", bgr), ("bgra.png", bgra)):
        cv2.imwrite(str(tmp_path / name), image)
        assert np.array_equal(imageio.read_ir(tmp_path / name), grey)
    # Grey visible images (one channel, or three equal channels as TNO stores them) stay grey.
    for name in ("g.png", "bgr.png", "bgra.png"):
        assert np.array_equal(imageio.read_visible(tmp_path / name), grey)
    colour = bgra.copy()
    colour[0, 0, 2] = 200
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    assert np.array_equal(imageio.read_visible(tmp_path / "colour.png"), colour[..., :3])


def test_write_image_is_atomic_and_by_extension(tmp_path):
    image = np.zeros((4, 4, 3), np.uint8)
    imageio.write_image(tmp_path / "a.jpg", image)
    imageio.write_image(tmp_path / "a.png", image)
    assert (tmp_path / "a.jpg").read_bytes()[:2] == b"\xff\xd8"
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.jpg", "a.png"]  # no temp files left


def test_sage_style_folders_pair_by_stem(tmp_path):
    for folder, names in (("Ir", ["1.png", "2.png", "3.jpg"]), ("Vis", ["2.jpg", "3.png", "4.png"])):
        (tmp_path / folder).mkdir()
        for name in names:
            cv2.imwrite(str(tmp_path / folder / name), np.zeros((2, 2), np.uint8))
    found = pairs.pair_dataset(tmp_path)
    assert [(p.stem, p.ir.name, p.vis.name) for p in found] == [("2", "2.png", "2.jpg"), ("3", "3.jpg", "3.png")]


def test_dataset_root_with_subsets_keeps_stems_apart(ivif_dir):
    all_pairs = pairs.resolve_pairs(ivif_dir, None)
    assert len(all_pairs) == 45
    assert len({p.stem for p in all_pairs}) == 45 and all("/" in p.stem for p in all_pairs)


def test_file_and_directory_mix_is_an_error(ivif_dir):
    with pytest.raises(SageEdgeError, match="two files or two directories"):
        pairs.resolve_pairs(ivif_dir / "TNO/ir/01.png", ivif_dir / "TNO/vis")


def test_atomic_outputs_get_normal_file_permissions(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        imageio.write_image(tmp_path / "a.png", np.zeros((2, 2), np.uint8))
    finally:
        os.umask(umask)
    assert (tmp_path / "a.png").stat().st_mode & 0o777 == 0o644
