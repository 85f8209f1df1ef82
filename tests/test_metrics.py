"""The twelve fusion metrics: hand-worked values, invariants, border conventions, independent references, CLI."""
from __future__ import annotations

import json
import math
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest

from cddfuse_reference import ref_vif  # tests/cddfuse_reference.py
from sage_edge import metrics as M
from sage_edge.errors import SageEdgeError
from conftest import run_cli

RNG = np.random.default_rng(7)


def rand_levels(h: int, w: int, levels: int = 256, rng=RNG) -> np.ndarray:
    return rng.integers(0, levels, (h, w)).astype(np.float64)


def smooth_random(h: int, w: int, seed: int) -> np.ndarray:
    """Random but image-like (correlated) integer levels 0..255."""
    rng = np.random.default_rng(seed)
    x = cv2.GaussianBlur(rng.normal(128, 60, (h, w)), (0, 0), 2.0) + rng.normal(0, 8, (h, w))
    return np.clip(np.round(x), 0, 255)


# --- independent straightforward references (loops / scipy, written for clarity not speed) -------


def ref_mi(x: np.ndarray, y: np.ndarray) -> float:
    """sum_ij p_ij ln(p_ij / (p_i p_j)) with one bin per distinct value, by counting."""
    xs, ys = x.astype(int).ravel().tolist(), y.astype(int).ravel().tolist()
    n = len(xs)
    cxy, cx, cy = Counter(zip(xs, ys)), Counter(xs), Counter(ys)
    return max(0.0, sum(c / n * math.log(c * n / (cx[a] * cy[b])) for (a, b), c in cxy.items()))


def ref_ssim(x: np.ndarray, y: np.ndarray, data_range: float = 2.0) -> float:
    """Mean SSIM over every 7x7 window lying fully inside the image (== skimage's 3-pixel crop)."""
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for i in range(x.shape[0] - 6):
        for j in range(x.shape[1] - 6):
            wx, wy = x[i : i + 7, j : j + 7].ravel(), y[i : i + 7, j : j + 7].ravel()
            ux, uy = wx.mean(), wy.mean()
            vx, vy = wx.var(ddof=1), wy.var(ddof=1)
            vxy = np.sum((wx - ux) * (wy - uy)) / 48
            values.append((2 * ux * uy + c1) * (2 * vxy + c2) / ((ux * ux + uy * uy + c1) * (vx + vy + c2)))
    return float(np.mean(values))


def ref_qabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    from scipy.signal import convolve2d

    hx = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], float)
    hy = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], float)

    def edges(img):
        sx, sy = convolve2d(img, hx, mode="same"), convolve2d(img, hy, mode="same")
        alpha = np.where(sx == 0, math.pi / 2, np.arctan(sy / np.where(sx == 0, 1, sx)))
        return np.hypot(sx, sy), alpha

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)

    def q(gs, a_s):
        out = np.zeros_like(gs)
        for idx in np.ndindex(gs.shape):
            lo, hi = min(gs[idx], gf[idx]), max(gs[idx], gf[idx])
            G = lo / hi if hi > 0 else 0.0
            A = 1 - abs(a_s[idx] - af[idx]) / (math.pi / 2)
            out[idx] = 0.9994 / (1 + math.exp(-15 * (G - 0.5))) * 0.9879 / (1 + math.exp(-22 * (A - 0.8)))
        return out

    return float(np.sum(q(ga, aa) * ga + q(gb, ab) * gb) / np.sum(ga + gb))


def ref_nabf(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """Shreyamsha Kumar's NABF with explicit loops; padding as MATLAB per_extn_im_fn (numpy 'reflect')."""
    kv = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]]) / 8.0
    kh = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]) / 8.0

    def edges(img):
        p = np.pad(img, 1, mode="reflect")
        gv, gh = np.zeros_like(img), np.zeros_like(img)
        for i in range(img.shape[0]):
            for j in range(img.shape[1]):
                gv[i, j] = np.sum(p[i : i + 3, j : j + 3] * kv)
                gh[i, j] = np.sum(p[i : i + 3, j : j + 3] * kh)
        alpha = np.zeros_like(img)
        for idx in np.ndindex(img.shape):
            if gh[idx] != 0:
                alpha[idx] = math.atan(gv[idx] / gh[idx])
            elif gv[idx] != 0:
                alpha[idx] = math.copysign(math.pi / 2, gv[idx])
        return np.hypot(gv, gh), alpha

    (ga, aa), (gb, ab), (gf, af) = edges(a), edges(b), edges(f)
    num = den = 0.0
    for idx in np.ndindex(f.shape):
        qs, ws = [], []
        for gs, a_s in ((ga, aa), (gb, ab)):
            G = min(gs[idx], gf[idx]) / max(gs[idx], gf[idx]) if gs[idx] and gf[idx] else 0.0
            A = abs(abs(a_s[idx] - af[idx]) - math.pi / 2) * 2 / math.pi
            qg = 0.9999 / (1 + math.exp(-19 * (G - 0.5)))
            qa = 0.9995 / (1 + math.exp(-22 * (A - 0.5)))
            qs.append(math.sqrt(qg * qa))
            ws.append(gs[idx] ** 1.5 if gs[idx] >= 2 else 0.001)
        if gf[idx] > ga[idx] and gf[idx] > gb[idx]:
            num += (1 - qs[0]) * ws[0] + (1 - qs[1]) * ws[1]
        den += ws[0] + ws[1]
    return num / den


# --- single-image metrics -------------------------------------------------------------------


def test_entropy_hand_values():
    half = np.zeros((4, 6))
    half[:, 3:] = 255
    assert M.entropy(half) == pytest.approx(1.0, abs=1e-12)
    four = np.array([[0, 1], [2, 3]] * 2, float)  # four equally likely levels: 2 bits
    assert M.entropy(four) == pytest.approx(2.0, abs=1e-12)
    assert M.entropy(np.full((5, 5), 77.0)) == 0.0
    # p = (3/4, 1/4): -(3/4 log2 3/4 + 1/4 log2 1/4)
    three_one = np.array([[10, 10], [10, 200]], float)
    assert M.entropy(three_one) == pytest.approx(-(0.75 * math.log2(0.75) + 0.25 * math.log2(0.25)))
    # values are rounded to levels first: 9.6 and 10.4 both count as level 10
    assert M.entropy(np.array([[9.6, 10.4]])) == 0.0


def test_standard_deviation_is_population():
    x = np.array([[0, 2], [4, 6]], float)  # mean 3, squared deviations 9 1 1 9
    assert M.standard_deviation(x) == pytest.approx(math.sqrt(5.0))


def test_spatial_frequency_ramp_and_own_array_means():
    ramp = np.tile(np.arange(5) * 3.0, (4, 1))  # dx = 3 everywhere, dy = 0
    assert M.spatial_frequency(ramp) == pytest.approx(3.0)
    # dx = [4, 0] per row -> mean(dx^2) over the 2x2 dx array = 8 (not 32 / 6 over M N); dy = 0
    x = np.array([[0, 4, 4], [0, 4, 4]], float)
    assert M.spatial_frequency(x) == pytest.approx(math.sqrt(8.0))
    y = x.T.copy()  # the same in the other direction
    assert M.spatial_frequency(y) == pytest.approx(math.sqrt(8.0))


def test_average_gradient_ramp_and_one_sided_borders():
    ramp = np.tile(np.arange(6) * 2.0, (3, 1))  # gx = 2 everywhere (central and one-sided), gy = 0
    assert M.average_gradient(ramp) == pytest.approx(2.0 / math.sqrt(2))
    quad = np.tile(np.array([0, 1, 4, 9], float), (2, 1))
    # MATLAB gradient: [1-0, (4-0)/2, (9-1)/2, 9-4] = [1, 2, 4, 5]; mean 3
    assert M.average_gradient(quad) == pytest.approx(3.0 / math.sqrt(2))
    assert M.average_gradient(quad.T.copy()) == pytest.approx(3.0 / math.sqrt(2))


# --- two-source metrics ---------------------------------------------------------------------


def test_mutual_information_hand_values_and_symmetry():
    x = np.array([[0, 0, 255, 255]] * 2, float)
    # MI(X, X) = H(X) in nats: two equally likely levels -> ln 2, for F = A = B twice
    assert M.mutual_information(x, x, x) == pytest.approx(2 * math.log(2))
    independent = np.array([[0, 255, 0, 255]] * 2, float)
    # 0 up to the rounding of four logs, which differs by a few ULPs between libm/SIMD builds
    assert M.mutual_information(x, independent, independent) == pytest.approx(0.0, abs=1e-12)
    a, b = rand_levels(20, 30, 8), rand_levels(20, 30, 8)
    f = np.clip(a + rand_levels(20, 30, 3), 0, 255)
    assert M._mutual_info(f, a) == pytest.approx(M._mutual_info(a, f), rel=1e-12)
    assert M.mutual_information(f, a, b) == pytest.approx(ref_mi(f, a) + ref_mi(f, b), rel=1e-12)
    # the 256-bin joint histogram equals sklearn's one-bin-per-distinct-value on 0..255 images
    big_a, big_f = smooth_random(40, 50, 1), smooth_random(40, 50, 2)
    assert M._mutual_info(big_f, big_a) == pytest.approx(ref_mi(big_f, big_a), rel=1e-12)


def test_scd_and_cc_hand_values():
    a = np.array([[1, 2], [3, 4]], float)
    b = np.array([[4, 1], [3, 2]], float)
    f = a + b  # F - B = A and F - A = B: both correlations are 1
    assert M.scd(f, a, b) == pytest.approx(2.0)
    assert M.correlation_coefficient(a, a, a) == pytest.approx(1.0)
    assert M.correlation_coefficient(a, a, 10 - a) == pytest.approx(0.0)  # (1 + -1) / 2
    # a straightforward Pearson formula on random data
    ra, rb, rf = rand_levels(9, 11), rand_levels(9, 11), rand_levels(9, 11)
    assert M.correlation_coefficient(rf, ra, rb) == pytest.approx(
        (np.corrcoef(ra.ravel(), rf.ravel())[0, 1] + np.corrcoef(rb.ravel(), rf.ravel())[0, 1]) / 2
    )
    assert M.scd(rf, ra, rb) == pytest.approx(
        np.corrcoef(ra.ravel(), (rf - rb).ravel())[0, 1] + np.corrcoef(rb.ravel(), (rf - ra).ravel())[0, 1]
    )


def test_psnr_hand_values_and_peak_option():
    a = np.zeros((4, 4))
    b = np.zeros((4, 4))
    f = np.full((4, 4), 10.0)  # MSE = 100 against both
    assert M.psnr(f, a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert M.psnr(f, a, b, peak="max") == pytest.approx(0.0, abs=1e-12)  # max(F)^2 / MSE = 1
    b2 = np.full((4, 4), 20.0)  # MSE(A,F) = 100, MSE(B,F) = 100 -> mean 100
    assert M.psnr(f, a, b2) == pytest.approx(10 * math.log10(255**2 / 100))
    assert M.psnr(a, a, a) == math.inf
    with pytest.raises(SageEdgeError):
        M.psnr(f, a, b, peak="256")


def test_vif_invariants_and_reference():
    x = smooth_random(96, 112, 3)
    assert M.vif(x, x, x) == pytest.approx(2.0, abs=1e-6)  # VIF(A, A) = 1 for each source
    flat = np.full_like(x, 90.0)
    assert M._vif_single(flat, x) == 1.0  # 0 / 0 counts as 1 (CDDFuse)
    a, b = smooth_random(96, 112, 4), smooth_random(96, 112, 5)
    f = np.round((a + b) / 2)
    expected = ref_vif(a, f) + ref_vif(b, f)
    assert M.vif(f, a, b) == pytest.approx(expected, rel=1e-9)
    assert 0 < M.vif(f, a, b) < 2


def test_vif_window_matches_matlab_fspecial():
    for n in (17, 9, 5, 3):
        g = M._vif_window_1d(n)
        m = (n - 1) / 2
        yy, xx = np.ogrid[-m : m + 1, -m : m + 1]
        h = np.exp(-(xx * xx + yy * yy) / (2 * (n / 5) ** 2))
        h[h < np.finfo(float).eps * h.max()] = 0
        np.testing.assert_allclose(np.outer(g, g), h / h.sum(), rtol=1e-12)


def test_qabf_max_when_fused_is_the_only_textured_source():
    a = smooth_random(32, 40, 6)
    flat = np.full_like(a, 128.0)
    assert M.QABF_MAX == pytest.approx(0.9994 / (1 + math.exp(-7.5)) * 0.9879 / (1 + math.exp(-4.4)))
    # B carries no gradient (an all-zero image has none even with zero padding) and F = A
    zeros = np.zeros_like(a)
    assert M.qabf(a, a, zeros) == pytest.approx(M.QABF_MAX, rel=1e-12)
    assert M.qabf(a, zeros, a) == pytest.approx(M.QABF_MAX, rel=1e-12)
    assert M.qabf(flat, a, zeros) < 0.5 * M.QABF_MAX
    assert math.isnan(M.qabf(a, zeros, zeros))


def test_qabf_border_is_zero_padding_and_orientation_convention():
    c = 100.0
    g, alpha = M._qabf_edges(np.full((6, 7), c))
    assert np.all(g[1:-1, 1:-1] == 0)
    assert np.all(alpha[1:-1, 1:-1] == math.pi / 2)  # sx = 0 -> pi/2
    # left edge (not a corner): the column outside is 0, so sx = -(1 + 2 + 1) c and sy = 0
    assert g[3, 0] == pytest.approx(4 * c)
    assert g[0, 3] == pytest.approx(4 * c)
    assert alpha[0, 3] == pytest.approx(math.pi / 2)  # top edge: only sy != 0, sx = 0


def test_qabf_reference():
    a, b = smooth_random(24, 30, 7), smooth_random(24, 30, 8)
    f = np.maximum(a, b)
    assert M.qabf(f, a, b) == pytest.approx(ref_qabf(f, a, b), rel=1e-10)


def test_ssim_invariants_reference_and_data_range():
    a = smooth_random(20, 23, 9)
    assert M.ssim(a, a, a) == pytest.approx(2.0, abs=1e-12)
    b, f = smooth_random(20, 23, 10), smooth_random(20, 23, 11)
    assert M.ssim(f, a, b) == pytest.approx(ref_ssim(f, a) + ref_ssim(f, b), rel=1e-9)
    assert M.ssim(f, a, b, data_range=255) == pytest.approx(ref_ssim(f, a, 255) + ref_ssim(f, b, 255), rel=1e-9)
    assert M.ssim(f, a, b, data_range=255) != pytest.approx(M.ssim(f, a, b), rel=1e-6)
    # the border is cropped, not padded: a corner pixel lies in exactly one full 7x7 window
    g = f.copy()
    g[0, 0] += 50
    assert M.ssim(g, a, b) == pytest.approx(ref_ssim(g, a) + ref_ssim(g, b), rel=1e-9)


def test_nabf_border_is_reflect_101():
    ramp = np.tile(np.arange(8, dtype=float), (5, 1))
    g, alpha = M._nabf_edges(ramp)
    # reflect without repeating the edge column: col -1 mirrors col 1 -> no gradient at column 0
    assert np.all(g[:, 0] == 0)
    assert np.all(g[:, -1] == 0)
    np.testing.assert_allclose(g[:, 1:-1], 1.0)  # (x[j+1] - x[j-1]) * (1 + 2 + 1) / 8
    assert np.all(g == M._nabf_edges(ramp + 50)[0])
    g_flat, _ = M._nabf_edges(np.full((4, 4), 200.0))
    assert np.all(g_flat == 0)  # no padding artefact, unlike Qabf's zero padding
    vertical = ramp.T.copy()
    _, alpha_v = M._nabf_edges(vertical)
    np.testing.assert_allclose(alpha_v[1:-1, :], math.pi / 2)  # gh = 0, gv > 0


def test_nabf_invariants_and_reference():
    a, b = smooth_random(18, 21, 12), smooth_random(18, 21, 13)
    assert M.nabf(a, a, a) == 0.0  # gF never exceeds both source gradients
    # integer levels, as the metrics receive them (float noise would make gh = +-1e-15 vs 0 ambiguous)
    noisy = np.clip(np.round(a + np.random.default_rng(14).normal(0, 40, a.shape)), 0, 255)
    value = M.nabf(noisy, a, b)
    assert value == pytest.approx(ref_nabf(noisy, a, b), rel=1e-10)
    assert 0 < value < 1
    f = np.round((a + b) / 2)
    assert M.nabf(f, a, b) == pytest.approx(ref_nabf(f, a, b), rel=1e-10, abs=1e-15)


# --- compute_metrics ------------------------------------------------------------------------


def test_compute_metrics_keys_grey_conversion_and_subset(synthetic_pair):
    ir, vis = synthetic_pair
    fused = np.maximum(ir[..., None], vis)
    result = M.compute_metrics(ir, vis, fused)
    assert tuple(result) == M.METRIC_NAMES
    assert all(isinstance(v, float) and math.isfinite(v) for v in result.values())
    grey = cv2.cvtColor(fused, cv2.COLOR_BGR2GRAY)
    np.testing.assert_array_equal(M.to_gray_levels(fused), grey.astype(np.float64))
    assert M.to_gray_levels(grey).dtype == np.float64
    assert M.compute_metrics(ir, vis, grey) == result  # BGR fused == its OpenCV grey
    subset = M.compute_metrics(ir, vis, fused, metrics="nabf,EN")
    assert list(subset) == ["Nabf", "EN"]
    assert subset["EN"] == result["EN"]
    peak = M.compute_metrics(ir, vis, fused, metrics=["PSNR"], psnr_peak="max")["PSNR"]
    assert peak == pytest.approx(result["PSNR"] + 20 * math.log10(grey.max() / 255))


def test_compute_metrics_errors(synthetic_pair):
    ir, vis = synthetic_pair
    with pytest.raises(SageEdgeError, match="unknown metric 'FOO'"):
        M.compute_metrics(ir, vis, vis, metrics="EN,FOO")
    with pytest.raises(SageEdgeError, match="sizes differ"):
        M.compute_metrics(ir, vis, vis[:-1])


# --- CLI ------------------------------------------------------------------------------------


@pytest.fixture()
def triple_dirs(tmp_path: Path, synthetic_pair):
    ir, vis = synthetic_pair
    for name in ("ir", "vis", "fused"):
        (tmp_path / name).mkdir()
    for k, stem in enumerate(("a", "b")):
        shifted_ir = np.roll(ir, 7 * k, axis=1)
        cv2.imwrite(str(tmp_path / "ir" / f"{stem}.png"), shifted_ir)
        cv2.imwrite(str(tmp_path / "vis" / f"{stem}.png"), vis)
        cv2.imwrite(str(tmp_path / "fused" / f"{stem}.png"), np.maximum(shifted_ir[..., None], vis))
    return tmp_path


def test_cli_metrics_json_directories(triple_dirs: Path):
    res = run_cli("metrics", triple_dirs / "ir", triple_dirs / "vis", triple_dirs / "fused", "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert set(out) == {"images", "mean"}
    assert set(out["images"]) == {"a", "b"}
    assert tuple(out["mean"]) == M.METRIC_NAMES
    for name in M.METRIC_NAMES:
        assert out["mean"][name] == pytest.approx((out["images"]["a"][name] + out["images"]["b"][name]) / 2)
    ir = cv2.imread(str(triple_dirs / "ir" / "b.png"), cv2.IMREAD_UNCHANGED)
    vis = cv2.imread(str(triple_dirs / "vis" / "b.png"))
    fused = cv2.imread(str(triple_dirs / "fused" / "b.png"))
    for name, value in M.compute_metrics(ir, vis, fused).items():
        assert out["images"]["b"][name] == pytest.approx(value, rel=1e-12)


def test_cli_metrics_files_table_and_subset(triple_dirs: Path):
    d = triple_dirs
    res = run_cli("metrics", d / "ir/a.png", d / "vis/a.png", d / "fused/a.png", "--metrics", "en,Qabf")
    assert res.returncode == 0, res.stderr
    header, row = res.stdout.strip().splitlines()
    assert header.split() == ["image", "EN", "Qabf"]
    assert row.split()[0] == "a"
    res = run_cli("metrics", d / "ir/a.png", d / "vis/a.png", d / "fused/a.png", "--json", "--metrics", "SD")
    assert list(json.loads(res.stdout)["images"]["a"]) == ["SD"]


def _one_line_error(res, *fragments: str) -> None:
    assert res.returncode != 0
    assert res.stdout == ""
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def test_cli_metrics_bad_input(triple_dirs: Path, tmp_path: Path):
    d = triple_dirs
    _one_line_error(run_cli("metrics", d / "ir/a.png", d / "vis/a.png", d / "fused/a.png", "--metrics", "EN,XYZ"),
                    "unknown metric 'XYZ'")
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), np.zeros((10, 12, 3), np.uint8))
    _one_line_error(run_cli("metrics", d / "ir/a.png", d / "vis/a.png", small), "sizes differ", "12x10")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    _one_line_error(run_cli("metrics", d / "ir/a.png", d / "vis/a.png", broken), "broken.png")
    (d / "fused" / "b.png").unlink()
    _one_line_error(run_cli("metrics", d / "ir", d / "vis", d / "fused"), "no fused image", "'b'")
    cv2.imwrite(str(d / "fused" / "b.png"), np.zeros((96, 128), np.uint8))
    cv2.imwrite(str(d / "fused" / "zzz.png"), np.zeros((96, 128), np.uint8))
    _one_line_error(run_cli("metrics", d / "ir", d / "vis", d / "fused"), "no IR/visible pair", "'zzz'")
