"""The twelve standard infrared-visible fusion metrics, computed as the field computes them.

Conventions follow the ``Evaluator`` class of the CDDFuse code base (the most
widely copied Python evaluator for IVIF), so sage-edge's numbers sit next to
published tables. Nabf, which that class lacks, follows B. K. Shreyamsha
Kumar's MATLAB code. Every formula is written in its function's docstring.

Inputs
    All metrics work on grey images holding levels 0..255 as float64.
    Grey is OpenCV's ``COLOR_BGR2GRAY`` (0.299 R + 0.587 G + 0.114 B) of the
    8-bit image (``to_gray_levels``; integer-valued). A = IR, B = visible,
    F = fused; an RGB fused image is converted to grey first.

Options (``compute_metrics``)
    ``psnr_peak``: ``"255"`` (default, the textbook PSNR) or ``"max"`` (max(F)^2,
    what the CDDFuse code does). ``ssim_data_range``: 2.0 (default; what
    scikit-image used for float input in the CDDFuse evaluator) or 255.

Only numpy and OpenCV are needed (this module also runs on a Jetson); filters
use OpenCV with explicit kernels and border handling, cropped where a metric
uses "valid" filtering.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from sage_edge.colour import gray_from_bgr_image
from sage_edge.errors import SageEdgeError

METRIC_NAMES = ("EN", "SD", "SF", "AG", "MI", "SCD", "VIF", "Qabf", "SSIM", "PSNR", "CC", "Nabf")
# Metrics where a smaller value is better (all others: larger is better).
LOWER_IS_BETTER = frozenset({"Nabf"})
PSNR_PEAKS = ("255", "max")
SSIM_DATA_RANGES = (2.0, 255.0)


def higher_is_better(name: str) -> bool:
    return name not in LOWER_IS_BETTER


# --- inputs ---------------------------------------------------------------------------------


def to_gray_levels(image: np.ndarray) -> np.ndarray:
    """An image -> H x W float64 grey levels 0..255.

    H x W x 3 uint8 BGR: OpenCV's ``COLOR_BGR2GRAY`` on the 8-bit image (bit-exact, so already
    rounded). H x W x 4 drops alpha; H x W x 1 is squeezed. A 2-D image (grey) passes through
    unchanged as float64.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim == 3 and image.shape[2] == 3:
        if image.dtype != np.uint8:
            raise SageEdgeError(f"colour images must be 8-bit for the metrics, got {image.dtype}")
        return gray_from_bgr_image(image).astype(np.float64)
    if image.ndim != 2:
        raise SageEdgeError(f"expected a grey (H x W) or BGR (H x W x 3) image, got shape {image.shape}")
    return image.astype(np.float64)


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image, dtype=np.float64)
    if image.ndim != 2:
        raise SageEdgeError(f"metrics take grey H x W images, got shape {image.shape}")
    return image


def _triple(f: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    f, a, b = _grey(f), _grey(a), _grey(b)
    if not f.shape == a.shape == b.shape:
        raise SageEdgeError(
            f"image sizes differ: IR {a.shape[1]}x{a.shape[0]}, visible {b.shape[1]}x{b.shape[0]}, "
            f"fused {f.shape[1]}x{f.shape[0]}"
        )
    return f, a, b


# --- filtering helpers (OpenCV; all float64) -------------------------------------------------


def _correlate(image: np.ndarray, kernel: np.ndarray, border: int) -> np.ndarray:
    """Same-size correlation (kernel not flipped), centred, with the given OpenCV border."""
    return cv2.filter2D(image, cv2.CV_64F, kernel, anchor=(-1, -1), borderType=border)


def _convolve_same_zero(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``scipy.signal.convolve2d(image, kernel, mode="same")`` for an odd kernel: zero padding, flipped."""
    return cv2.filter2D(image, cv2.CV_64F, cv2.flip(kernel, -1), borderType=cv2.BORDER_CONSTANT)


def _sep_valid(image: np.ndarray, k1d: np.ndarray) -> np.ndarray:
    """"valid" correlation with the separable kernel outer(k1d, k1d) (odd length): filter, then crop."""
    r = (len(k1d) - 1) // 2
    out = cv2.sepFilter2D(image, cv2.CV_64F, k1d, k1d, borderType=cv2.BORDER_REFLECT_101)
    return out[r : out.shape[0] - r, r : out.shape[1] - r]


# --- single-image metrics --------------------------------------------------------------------


def entropy(img: np.ndarray) -> float:
    """EN = -sum_k p_k log2 p_k, p = the 256-bin histogram of round(img) / (M N). Bits.

    Convention (CDDFuse): values are rounded to uint8 levels first; empty bins contribute 0.
    """
    levels = np.clip(np.round(_grey(img)), 0, 255).astype(np.uint8).ravel()
    p = np.bincount(levels, minlength=256) / levels.size
    p = p[p > 0]
    return float(-np.sum(p * np.log2(p)))


def standard_deviation(img: np.ndarray) -> float:
    """SD = sqrt(sum (x - mean)^2 / (M N)): the population standard deviation (``np.std``)."""
    return float(np.std(_grey(img)))


def spatial_frequency(img: np.ndarray) -> float:
    """SF = sqrt(mean(dx^2) + mean(dy^2)).

    dx = img[:, 1:] - img[:, :-1] (M x (N-1)) and dy = img[1:, :] - img[:-1, :] ((M-1) x N);
    each mean is over its own difference array (CDDFuse), not over M N.
    """
    x = _grey(img)
    dx = np.diff(x, axis=1)
    dy = np.diff(x, axis=0)
    return float(np.sqrt(np.mean(dx * dx) + np.mean(dy * dy)))


def average_gradient(img: np.ndarray) -> float:
    """AG = mean over all M N pixels of sqrt((gx^2 + gy^2) / 2).

    gx, gy follow MATLAB's ``gradient`` (== ``np.gradient``): central differences
    (x[i+1] - x[i-1]) / 2 inside, one-sided differences x[1] - x[0] and x[-1] - x[-2] at the borders.
    """
    x = _grey(img)
    if min(x.shape) < 2:
        raise SageEdgeError(f"AG needs an image of at least 2x2 pixels, got {x.shape[1]}x{x.shape[0]}")
    gy, gx = np.gradient(x)
    return float(np.mean(np.sqrt((gx * gx + gy * gy) / 2.0)))


# --- two-source metrics ----------------------------------------------------------------------


def _mutual_info(x: np.ndarray, y: np.ndarray) -> float:
    """sum_ij p_ij ln(p_ij / (p_i p_j)) over the joint histogram of integer levels, clipped at 0."""
    xi = np.clip(np.round(x), 0, 255).astype(np.int64).ravel()
    yi = np.clip(np.round(y), 0, 255).astype(np.int64).ravel()
    n = xi.size
    joint = np.bincount(xi * 256 + yi, minlength=256 * 256).reshape(256, 256)
    px = joint.sum(axis=1)
    py = joint.sum(axis=0)
    i, j = np.nonzero(joint)
    nij = joint[i, j].astype(np.float64)
    # p_ij ln(p_ij / (p_i p_j)) with p = count / n  ->  nij/n * ln(nij * n / (n_i n_j))
    mi = np.sum(nij / n * (np.log(nij) + math.log(n) - np.log(px[i].astype(np.float64)) - np.log(py[j].astype(np.float64))))
    return float(max(mi, 0.0))


def mutual_information(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """MI = MI(F, A) + MI(F, B), natural log (nats).

    MI(X, Y) = sum_ij p_ij ln(p_ij / (p_i p_j)) with p_ij the joint histogram with one bin per
    distinct integer value, as ``sklearn.metrics.mutual_info_score`` on integer images (which
    also clips a negative rounding result to 0). Symmetric in X and Y.
    """
    f, a, b = _triple(fused, ir, vis)
    return _mutual_info(f, a) + _mutual_info(f, b)


def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    """r = sum((x - mx)(y - my)) / sqrt(sum((x - mx)^2) sum((y - my)^2)); nan if either is constant."""
    xc = x - x.mean()
    yc = y - y.mean()
    den = math.sqrt(float(np.sum(xc * xc)) * float(np.sum(yc * yc)))
    if den == 0.0:
        return float("nan")
    return float(np.sum(xc * yc) / den)


def scd(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """SCD = r(F - B, A) + r(F - A, B): the sum of the correlations of differences (Pearson r)."""
    f, a, b = _triple(fused, ir, vis)
    return _pearson(a, f - b) + _pearson(b, f - a)


def correlation_coefficient(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """CC = (r(A, F) + r(B, F)) / 2 with Pearson's r."""
    f, a, b = _triple(fused, ir, vis)
    return (_pearson(a, f) + _pearson(b, f)) / 2.0


def psnr(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, peak: str = "255") -> float:
    """PSNR = 10 log10(P^2 / MSE), MSE = (mean((A - F)^2) + mean((B - F)^2)) / 2.

    peak "255" (default): P = 255. peak "max": P = max(F), as the CDDFuse code does.
    MSE = 0 gives +inf.
    """
    f, a, b = _triple(fused, ir, vis)
    if str(peak) not in PSNR_PEAKS:
        raise SageEdgeError(f"unknown PSNR peak '{peak}'; choose from {', '.join(PSNR_PEAKS)}")
    p = 255.0 if str(peak) == "255" else float(f.max())
    mse = (np.mean((a - f) ** 2) + np.mean((b - f) ** 2)) / 2.0
    if mse == 0.0:
        return float("inf")
    with np.errstate(divide="ignore"):
        return float(10.0 * np.log10(p * p / mse))


# VIF: 4 scales, Gaussian windows N = 17, 9, 5, 3, sigma = N / 5.
VIF_SIGMA_NSQ = 2.0
VIF_EPS = 1e-10


def _vif_window_1d(n: int) -> np.ndarray:
    """1-D factor g of MATLAB's fspecial('gaussian', n, n/5): the 2-D window is outer(g, g)."""
    sd = n / 5.0
    r = (n - 1) / 2.0
    t = np.arange(-r, r + 1)
    g = np.exp(-(t * t) / (2.0 * sd * sd))
    # MATLAB zeroes taps below eps * max of the 2-D window; for N <= 17, sd = N/5 none are that small.
    return g / g.sum()


def _vif_terms(ref: np.ndarray, dist: np.ndarray, mu2: np.ndarray, sigma2_sq: np.ndarray, win: np.ndarray):
    """(num, den) of one scale of vifp_mscale, given the distorted image's mean and variance."""
    mu1 = _sep_valid(ref, win)
    sigma1_sq = _sep_valid(ref * ref, win) - mu1 * mu1
    sigma12 = _sep_valid(ref * dist, win) - mu1 * mu2
    sigma1_sq[sigma1_sq < 0] = 0

    g = sigma12 / (sigma1_sq + VIF_EPS)
    sv_sq = sigma2_sq - g * sigma12
    flat1 = sigma1_sq < VIF_EPS
    g[flat1] = 0
    sv_sq[flat1] = sigma2_sq[flat1]
    sigma1_sq[flat1] = 0
    flat2 = sigma2_sq < VIF_EPS
    g[flat2] = 0
    sv_sq[flat2] = 0
    neg = g < 0
    sv_sq[neg] = sigma2_sq[neg]
    g[neg] = 0
    sv_sq[sv_sq <= VIF_EPS] = VIF_EPS
    num = float(np.sum(np.log10(1.0 + g * g * sigma1_sq / (sv_sq + VIF_SIGMA_NSQ))))
    den = float(np.sum(np.log10(1.0 + sigma1_sq / VIF_SIGMA_NSQ)))
    return num, den


def _vif_many(refs: Sequence[np.ndarray], dist: np.ndarray) -> list[float]:
    """vifp_mscale(ref, dist) (Sheikh & Bovik, pixel domain) for each ref; dist's filtering is shared."""
    refs = list(refs)
    nums = [0.0] * len(refs)
    dens = [0.0] * len(refs)
    for scale in range(1, 5):
        n = 2 ** (4 - scale + 1) + 1
        win = _vif_window_1d(n)
        if scale > 1:
            refs = [_sep_valid(r, win)[::2, ::2] for r in refs]
            dist = _sep_valid(dist, win)[::2, ::2]
        if min(dist.shape) < n:
            break  # image too small for this scale: no "valid" output
        mu2 = _sep_valid(dist, win)
        sigma2_sq = _sep_valid(dist * dist, win) - mu2 * mu2
        sigma2_sq[sigma2_sq < 0] = 0
        for i, ref in enumerate(refs):
            num, den = _vif_terms(ref, dist, mu2, sigma2_sq, win)
            nums[i] += num
            dens[i] += den
    # CDDFuse: 0/0 (a flat reference) counts as 1
    return [num / den if den != 0.0 else 1.0 for num, den in zip(nums, dens)]


def _vif_single(ref: np.ndarray, dist: np.ndarray) -> float:
    return _vif_many([ref], dist)[0]


def vif(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """VIF = VIF(A, F) + VIF(B, F), pixel-domain multi-scale VIF (Sheikh & Bovik ``vifp_mscale``).

    For scale s = 1..4: window N = 2^(5-s) + 1 (17, 9, 5, 3), Gaussian sigma = N/5 normalised to
    sum 1. From scale 2 on, both images are first filtered ("valid") and down-sampled by 2
    (``x[::2, ::2]``). Then with "valid" filtering: mu, sigma1^2 = E[r^2] - mu1^2 (clipped at 0),
    sigma2^2, sigma12; g = sigma12 / (sigma1^2 + eps), sv^2 = sigma2^2 - g sigma12, with the
    usual fixes (g = 0 and sv^2 = sigma2^2 where sigma1^2 < eps; g = sv^2 = 0 where sigma2^2 < eps;
    g < 0 -> g = 0, sv^2 = sigma2^2; sv^2 >= eps), eps = 1e-10, sigma_nsq = 2.
    num += sum log10(1 + g^2 sigma1^2 / (sv^2 + sigma_nsq)); den += sum log10(1 + sigma1^2 / sigma_nsq);
    VIF = num / den (1 where den = 0).
    """
    f, a, b = _triple(fused, ir, vis)
    vif_a, vif_b = _vif_many([a, b], f)
    return vif_a + vif_b


# Qabf (Xydeas-Petrovic, CDDFuse's constants).
QABF_TG, QABF_KG, QABF_DG = 0.9994, -15.0, 0.5
QABF_TA, QABF_KA, QABF_DA = 0.9879, -22.0, 0.8
SOBEL_X = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64)
SOBEL_Y = np.array([[1, 2, 1], [0, 0, 0], [-1, -2, -1]], np.float64)
# The largest Q_AF can be (G = 1, A = 1): the constants make it a little below 1 (~0.9748).
QABF_MAX = QABF_TG / (1 + math.exp(QABF_KG * (1 - QABF_DG))) * QABF_TA / (1 + math.exp(QABF_KA * (1 - QABF_DA)))


def _qabf_edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    sx = _convolve_same_zero(img, SOBEL_X)
    sy = _convolve_same_zero(img, SOBEL_Y)
    g = np.sqrt(sx * sx + sy * sy)
    alpha = np.full(img.shape, math.pi / 2)
    nz = sx != 0
    alpha[nz] = np.arctan(sy[nz] / sx[nz])
    return g, alpha


def _strength_ratio(gs: np.ndarray, gf: np.ndarray) -> np.ndarray:
    """min(gs, gf) / max(gs, gf), 0 where both are 0."""
    hi = np.maximum(gs, gf)
    out = np.zeros_like(hi)
    np.divide(np.minimum(gs, gf), hi, out=out, where=hi > 0)
    return out


def _qabf_q(gs: np.ndarray, a_s: np.ndarray, gf: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    G = _strength_ratio(gs, gf)
    A = 1 - np.abs(a_s - a_f) / (math.pi / 2)
    qg = QABF_TG / (1 + np.exp(QABF_KG * (G - QABF_DG)))
    qa = QABF_TA / (1 + np.exp(QABF_KA * (A - QABF_DA)))
    return qg * qa


def qabf(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """Qabf (Xydeas-Petrovic edge preservation), CDDFuse conventions.

    Sobel sx = conv(img, [-1 0 1; -2 0 2; -1 0 1]), sy = conv(img, [1 2 1; 0 0 0; -1 -2 -1]),
    "same" convolution with zero padding. g = sqrt(sx^2 + sy^2); alpha = atan(sy / sx), pi/2 where
    sx = 0. For a source S: G = min(gS, gF) / max(gS, gF) (0 where both are 0),
    Aang = 1 - |alpha_S - alpha_F| / (pi/2), Q_SF = Tg / (1 + exp(kg (G - Dg))) * Ta / (1 + exp(ka (Aang - Da)))
    with Tg = 0.9994, kg = -15, Dg = 0.5, Ta = 0.9879, ka = -22, Da = 0.8 (L = 1: weights are g).
    Qabf = sum(Q_AF gA + Q_BF gB) / sum(gA + gB); nan if neither source has any gradient.
    Its ceiling is ``QABF_MAX`` (~0.9748), reached where F keeps every source edge exactly.
    (CDDFuse sets G = gF where gA == gF != 0, a slip that changes Q there by < 0.06 %; min/max is used.)
    """
    f, a, b = _triple(fused, ir, vis)
    ga, aa = _qabf_edges(a)
    gb, ab = _qabf_edges(b)
    gf, af = _qabf_edges(f)
    den = float(np.sum(ga + gb))
    if den == 0.0:
        return float("nan")
    q_af = _qabf_q(ga, aa, gf, af)
    q_bf = _qabf_q(gb, ab, gf, af)
    return float(np.sum(q_af * ga + q_bf * gb) / den)


# SSIM: scikit-image's defaults for float input as used by the CDDFuse evaluator.
SSIM_WIN = 7
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _ssim_single(x: np.ndarray, y: np.ndarray, data_range: float) -> float:
    if min(x.shape) < SSIM_WIN:
        raise SageEdgeError(f"SSIM needs images of at least {SSIM_WIN}x{SSIM_WIN} pixels, got {x.shape[1]}x{x.shape[0]}")
    npix = SSIM_WIN * SSIM_WIN
    cov_norm = npix / (npix - 1.0)  # sample covariance

    box_1d = np.full(SSIM_WIN, 1.0 / SSIM_WIN)

    def box(z: np.ndarray) -> np.ndarray:
        return _sep_valid(z, box_1d)  # direct sums, not running sums: no drift on flat regions

    ux, uy = box(x), box(y)
    vx = cov_norm * (box(x * x) - ux * ux)
    vy = cov_norm * (box(y * y) - uy * uy)
    vxy = cov_norm * (box(x * y) - ux * uy)
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean())


def ssim(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray, data_range: float = 2.0) -> float:
    """SSIM = SSIM(F, A) + SSIM(F, B), as ``skimage.metrics.structural_similarity`` with its
    float defaults in the CDDFuse evaluator (reimplemented here).

    7 x 7 uniform window; means ux, uy; sample (co)variances vx = 49/48 (E[x^2] - ux^2), vy, vxy;
    C1 = (0.01 R)^2, C2 = (0.03 R)^2 with R = ``data_range`` (2 by default, as scikit-image took
    for float images; 255 is the other choice); S = (2 ux uy + C1)(2 vxy + C2) / ((ux^2 + uy^2 + C1)(vx + vy + C2));
    SSIM is the mean of S after cropping a 3-pixel border (so the padding never matters).
    """
    f, a, b = _triple(fused, ir, vis)
    return _ssim_single(f, a, data_range) + _ssim_single(f, b, data_range)


# Nabf (Shreyamsha Kumar's modified fusion-artefact measure).
NABF_TD, NABF_WT_MIN, NABF_LG = 2.0, 0.001, 1.5
NABF_NRG, NABF_KG, NABF_SIGMAG = 0.9999, 19.0, 0.5
NABF_NRA, NABF_KA, NABF_SIGMAA = 0.9995, 22.0, 0.5
NABF_SOBEL_V = np.array([[-1, -2, -1], [0, 0, 0], [1, 2, 1]], np.float64) / 8.0
NABF_SOBEL_H = np.array([[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]], np.float64) / 8.0


def _nabf_edges(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    gv = _correlate(img, NABF_SOBEL_V, cv2.BORDER_REFLECT_101)
    gh = _correlate(img, NABF_SOBEL_H, cv2.BORDER_REFLECT_101)
    g = np.sqrt(gv * gv + gh * gh)
    # atan(gv / gh), +-pi/2 where gh = 0 (MATLAB's atan(+-Inf)), 0 where both are 0.
    alpha = np.zeros_like(g)
    nz = gh != 0
    alpha[nz] = np.arctan(gv[nz] / gh[nz])
    vert = (~nz) & (gv != 0)
    alpha[vert] = np.sign(gv[vert]) * (math.pi / 2)
    return g, alpha


def _nabf_q(gs: np.ndarray, a_s: np.ndarray, gf: np.ndarray, a_f: np.ndarray) -> np.ndarray:
    G = np.zeros_like(gs)
    both = (gs != 0) & (gf != 0)
    G[both] = np.minimum(gs[both], gf[both]) / np.maximum(gs[both], gf[both])
    A = np.abs(np.abs(a_s - a_f) - math.pi / 2) * 2 / math.pi
    qg = NABF_NRG / (1 + np.exp(-NABF_KG * (G - NABF_SIGMAG)))
    qa = NABF_NRA / (1 + np.exp(-NABF_KA * (A - NABF_SIGMAA)))
    return np.sqrt(qg * qa)


def nabf(fused: np.ndarray, ir: np.ndarray, vis: np.ndarray) -> float:
    """Nabf: Shreyamsha Kumar's modified fusion-artefact measure (lower is better).

    Sobel kernels [-1 -2 -1; 0 0 0; 1 2 1] / 8 (gv) and [-1 0 1; -2 0 2; -1 0 1] / 8 (gh), applied
    as correlation with reflect padding (numpy's "reflect" / OpenCV REFLECT_101, the edge row not
    repeated, as the MATLAB reference's per_extn_im_fn). g = sqrt(gv^2 + gh^2);
    alpha = atan(gv / gh) (+-pi/2 where gh = 0, 0 where gv = gh = 0).
    For a source S: G = min(gS, gF) / max(gS, gF) (0 where either is 0),
    Aang = ||alpha_S - alpha_F| - pi/2| * 2 / pi, Qg = Nrg / (1 + exp(-kg (G - sigmag))),
    Qa = Nra / (1 + exp(-ka (Aang - sigmaa))), Q_SF = sqrt(Qg Qa); Nrg = 0.9999, kg = 19,
    sigmag = 0.5, Nra = 0.9995, ka = 22, sigmaa = 0.5. Weights w_S = gS^Lg where gS >= Td, else
    wt_min (Td = 2, Lg = 1.5, wt_min = 0.001).
    Nabf = sum([gF > gA and gF > gB] ((1 - Q_AF) w_A + (1 - Q_BF) w_B)) / sum(w_A + w_B).
    """
    f, a, b = _triple(fused, ir, vis)
    ga, aa = _nabf_edges(a)
    gb, ab = _nabf_edges(b)
    gf, af = _nabf_edges(f)
    q_af = _nabf_q(ga, aa, gf, af)
    q_bf = _nabf_q(gb, ab, gf, af)
    wa = np.where(ga >= NABF_TD, ga**NABF_LG, NABF_WT_MIN)
    wb = np.where(gb >= NABF_TD, gb**NABF_LG, NABF_WT_MIN)
    artefact = (gf > ga) & (gf > gb)
    num = np.sum(np.where(artefact, (1 - q_af) * wa + (1 - q_bf) * wb, 0.0))
    return float(num / np.sum(wa + wb))


# --- all of them -----------------------------------------------------------------------------

_SINGLE: dict[str, Callable[[np.ndarray], float]] = {
    "EN": entropy,
    "SD": standard_deviation,
    "SF": spatial_frequency,
    "AG": average_gradient,
}
_TRIPLE: dict[str, Callable[..., float]] = {
    "MI": mutual_information,
    "SCD": scd,
    "VIF": vif,
    "Qabf": qabf,
    "CC": correlation_coefficient,
    "Nabf": nabf,
}


def parse_metric_names(names: str | Iterable[str] | None) -> tuple[str, ...]:
    """``None`` -> all; "EN,SD" or ["EN", "sd"] -> canonical names in the order given. Case-insensitive."""
    if names is None:
        return METRIC_NAMES
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.split(",")) if n]
    canonical = {n.lower(): n for n in METRIC_NAMES}
    out: list[str] = []
    for name in names:
        key = str(name).strip().lower()
        if key not in canonical:
            raise SageEdgeError(f"unknown metric '{name}'; choose from {', '.join(METRIC_NAMES)}")
        if canonical[key] not in out:
            out.append(canonical[key])
    if not out:
        raise SageEdgeError(f"no metrics named; choose from {', '.join(METRIC_NAMES)}")
    return tuple(out)


def metrics_from_levels(
    ir: np.ndarray,
    vis: np.ndarray,
    fused: np.ndarray,
    metrics: Sequence[str] | str | None = None,
    psnr_peak: str = "255",
    ssim_data_range: float = 2.0,
) -> dict[str, float]:
    """``compute_metrics`` on grey levels already converted with ``to_gray_levels`` (reuse across models)."""
    names = parse_metric_names(metrics)
    f, a, b = _triple(fused, ir, vis)
    out: dict[str, float] = {}
    for name in names:
        if name in _SINGLE:
            out[name] = _SINGLE[name](f)
        elif name == "PSNR":
            out[name] = psnr(f, a, b, peak=psnr_peak)
        elif name == "SSIM":
            out[name] = ssim(f, a, b, data_range=ssim_data_range)
        else:
            out[name] = _TRIPLE[name](f, a, b)
    return out


def compute_metrics(
    ir: np.ndarray,
    vis: np.ndarray,
    fused: np.ndarray,
    metrics: Sequence[str] | str | None = None,
    psnr_peak: str = "255",
    ssim_data_range: float = 2.0,
) -> dict[str, float]:
    """All (or the named) metrics for one IR / visible / fused triple of uint8 images (grey or BGR).

    Returns ``{name: value}`` in ``METRIC_NAMES`` order (or the order asked for). See the module
    docstring for the options.
    """
    names = parse_metric_names(metrics)
    if str(psnr_peak) not in PSNR_PEAKS:
        raise SageEdgeError(f"unknown PSNR peak '{psnr_peak}'; choose from {', '.join(PSNR_PEAKS)}")
    shapes = [np.asarray(x).shape[:2] for x in (ir, vis, fused)]
    if len(set(shapes)) != 1:
        (ha, wa), (hb, wb), (hf, wf) = shapes
        raise SageEdgeError(f"image sizes differ: IR {wa}x{ha}, visible {wb}x{hb}, fused {wf}x{hf}")
    return metrics_from_levels(
        to_gray_levels(ir), to_gray_levels(vis), to_gray_levels(fused), names, psnr_peak, ssim_data_range
    )


def mean_metrics(rows: Iterable[dict[str, float]]) -> dict[str, float]:
    """Per-metric mean over images (nan values are skipped; nan if none is finite)."""
    rows = list(rows)
    if not rows:
        return {}
    out: dict[str, float] = {}
    for name in rows[0]:
        values = np.array([r[name] for r in rows], np.float64)
        finite = values[~np.isnan(values)]
        out[name] = float(finite.mean()) if finite.size else float("nan")
    return out
