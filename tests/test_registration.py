"""Homography: calibrate recovers a synthetic warp to sub-pixel accuracy; run-time warp and crop."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from conftest import run_cli
from sage_edge.errors import SageEdgeError
from sage_edge.runtime.registration import (Homography, Registration, common_field, load_homography,
                                            save_homography)

TRUE_H = np.array([[0.92, -0.05, 14.0], [0.04, 0.95, 9.5], [1.5e-4, -1.0e-4, 1.0]])


def project(matrix, points):
    return cv2.perspectiveTransform(np.asarray(points, np.float64).reshape(-1, 1, 2), matrix).reshape(-1, 2)


def test_calibrate_recovers_synthetic_warp(tmp_path, synthetic_pair):
    ir, vis_base = synthetic_pair  # 96 x 128
    vis = cv2.warpPerspective(cv2.cvtColor(ir, cv2.COLOR_GRAY2BGR), TRUE_H, (160, 120))
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    rng = np.random.default_rng(0)
    ir_pts = np.stack(np.meshgrid(np.linspace(8, 120, 4), np.linspace(8, 88, 3)), -1).reshape(-1, 2)
    ir_pts = ir_pts + rng.uniform(-0.5, 0.5, ir_pts.shape)  # sub-pixel picks
    vis_pts = project(TRUE_H, ir_pts)
    vis_pts[3] += (25.0, -17.0)  # two mismatched clicks: RANSAC must reject them
    vis_pts[8] += (-30.0, 12.0)
    lines = ["x_ir,y_ir,x_vis,y_vis"] + [",".join(f"{v:.4f}" for v in (*a, *b)) for a, b in zip(ir_pts, vis_pts)]
    (tmp_path / "points.csv").write_text("\n".join(lines) + "\n")

    result = run_cli("calibrate", "--ir", tmp_path / "ir.png", "--vis", tmp_path / "vis.png",
                     "--points", tmp_path / "points.csv", "-o", tmp_path / "H.json")
    assert result.returncode == 0, result.stderr
    assert "10/12 points inliers" in result.stdout
    homography = load_homography(tmp_path / "H.json")
    assert homography.ir_size == (128, 96) and homography.output_size == (160, 120)
    grid = np.stack(np.meshgrid(np.linspace(0, 127, 9), np.linspace(0, 95, 7)), -1).reshape(-1, 2)
    error = np.linalg.norm(project(homography.matrix, grid) - project(TRUE_H, grid), axis=1)
    assert error.max() < 0.1  # sub-pixel over the whole IR frame
    preview = cv2.imread(str(tmp_path / "H_preview.png"))
    assert preview is not None and preview.shape == (120, 160, 3)
    # the stored crop is inside the IR footprint
    x, y, w, h = homography.crop
    footprint = cv2.warpPerspective(np.full(ir.shape, 255, np.uint8), TRUE_H, (160, 120), flags=cv2.INTER_NEAREST)
    assert w > 80 and h > 60 and footprint[y:y + h, x:x + w].min() == 255


def test_calibrate_errors_are_one_line(tmp_path, synthetic_pair):
    ir, vis = synthetic_pair
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    (tmp_path / "three.txt").write_text("1 2 3 4\n5 6 7 8\n9 1 2 3\n")
    result = run_cli("calibrate", "--ir", tmp_path / "ir.png", "--vis", tmp_path / "vis.png",
                     "--points", tmp_path / "three.txt", "-o", tmp_path / "H.json")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["error: a homography needs at least 4 matched points, got 3"]
    assert not (tmp_path / "H.json").exists() and not (tmp_path / "H_preview.png").exists()
    result = run_cli("calibrate", "--ir", tmp_path / "ir.png", "--vis", tmp_path / "vis.png", "--interactive",
                     "-o", tmp_path / "H.json", env={"DISPLAY": ""})
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert "--points" in result.stderr
    assert not (tmp_path / "H.json").exists()


def test_homography_file_round_trip_and_bad_files(tmp_path):
    h = Homography(TRUE_H, (128, 96), (160, 120), (10, 12, 100, 80))
    save_homography(tmp_path / "H.json", h)
    back = load_homography(tmp_path / "H.json")
    np.testing.assert_allclose(back.matrix, TRUE_H)
    assert (back.ir_size, back.output_size, back.crop) == ((128, 96), (160, 120), (10, 12, 100, 80))
    (tmp_path / "bad.json").write_text(json.dumps({"ir_to_visible": [[1, 0], [0, 1]], "ir_size": [1, 1],
                                                   "output_size": [1, 1]}))
    with pytest.raises(SageEdgeError, match="3x3"):
        load_homography(tmp_path / "bad.json")
    (tmp_path / "junk.json").write_text("{not json")
    with pytest.raises(SageEdgeError, match="not a sage-edge homography"):
        load_homography(tmp_path / "junk.json")
    with pytest.raises(SageEdgeError, match="no such homography"):
        load_homography(tmp_path / "missing.json")


def test_runtime_warp_matches_opencv_and_crops_to_common_field(synthetic_pair):
    ir, _ = synthetic_pair
    vis = np.zeros((120, 160, 3), np.uint8)
    h = Homography(TRUE_H, (128, 96), (160, 120))
    warped, same_vis = Registration(h, crop=False)(ir, vis)
    np.testing.assert_array_equal(warped, cv2.warpPerspective(ir, TRUE_H, (160, 120), flags=cv2.INTER_LINEAR))
    assert same_vis is vis
    cropped_ir, cropped_vis = Registration(h, crop=True)(ir, vis)
    x, y, w, h_ = common_field(TRUE_H, (128, 96), (160, 120))
    assert cropped_ir.shape == (h_, w) and cropped_vis.shape == (h_, w, 3)
    np.testing.assert_array_equal(cropped_ir, warped[y:y + h_, x:x + w])


def test_homography_rescales_for_other_camera_resolutions(synthetic_pair):
    h = Homography(TRUE_H, (128, 96), (160, 120))
    matrix = h.scaled((256, 192), (320, 240))  # both cameras at twice the calibration resolution
    points = np.array([[10.0, 20.0], [100.0, 80.0]])
    np.testing.assert_allclose(project(matrix, points * 2), project(TRUE_H, points) * 2, atol=1e-9)
