"""SAGE's loss terms. Tensors are N x 1 x H x W in [0, 1] unless noted.

∇a = |Sobel_x * a| + |Sobel_y * a| (3x3, zero padding), and
G(a; s1, s2) = L1(∇a, max(∇s1, ∇s2)): the fused gradient should follow the
stronger source gradient at every pixel.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]])
_SOBEL_Y = _SOBEL_X.t().contiguous()


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    """∇image = |Sobel_x| + |Sobel_y|, same size (zero padding)."""
    kernels = torch.stack([_SOBEL_X, _SOBEL_Y])[:, None].to(image)
    channels = image.shape[1]
    grads = F.conv2d(image, kernels.repeat(channels, 1, 1, 1), padding=1, groups=channels)
    return grads.abs().view(image.shape[0], channels, 2, *image.shape[-2:]).sum(dim=2)


def max_gradient_loss(fused: torch.Tensor, source_a: torch.Tensor, source_b: torch.Tensor) -> torch.Tensor:
    """G(F; A, B) = L1(∇F, max(∇A, ∇B))."""
    return F.l1_loss(sobel_magnitude(fused), torch.maximum(sobel_magnitude(source_a), sobel_magnitude(source_b)))


def intensity_loss(fused: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """L1(F, max(Y, IR)): keep the brighter source at every pixel (SeAFusion's intensity term).

    It keeps hot targets as bright as in the IR and dark scenes as bright as their brighter source.
    """
    return F.l1_loss(fused, torch.maximum(vis_y, ir))


# IR saliency: how much hotter a pixel is than the mean of its SALIENCY_WINDOW x SALIENCY_WINDOW
# neighbourhood, SALIENCY_CONTRAST (in [0, 1] units) and more counting as fully salient.
SALIENCY_WINDOW = 31
SALIENCY_CONTRAST = 0.1


def ir_saliency(ir: torch.Tensor) -> torch.Tensor:
    """s = clamp((IR - local mean of IR) / 0.1, 0, 1): 1 on hot targets, 0 on ordinary background."""
    local = F.avg_pool2d(ir, SALIENCY_WINDOW, stride=1, padding=SALIENCY_WINDOW // 2, count_include_pad=False)
    return ((ir - local) / SALIENCY_CONTRAST).clamp(0.0, 1.0)


def salient_intensity_losses(fused: torch.Tensor, vis_y: torch.Tensor,
                             ir: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(background, targets): mean((1 - s)·|F - Y|) and mean(s·|F - max(Y, IR)|), s = IR saliency.

    Hot targets as bright as in the IR, the rest as in the visible image. Unlike max(Y, IR) everywhere this
    neither replaces a detailed visible background by a brighter but flat IR one (fog, warm walls) nor
    lifts the surroundings of a target, so a target stands out against the visible background.
    """
    saliency = ir_saliency(ir)
    background = ((1.0 - saliency) * (fused - vis_y).abs()).mean()
    targets = (saliency * (fused - torch.maximum(vis_y, ir)).abs()).mean()
    return background, targets


def local_contrast(x: torch.Tensor) -> torch.Tensor:
    """x minus the mean of its SALIENCY_WINDOW x SALIENCY_WINDOW neighbourhood."""
    return x - F.avg_pool2d(x, SALIENCY_WINDOW, stride=1, padding=SALIENCY_WINDOW // 2, count_include_pad=False)


def target_contrast_loss(fused: torch.Tensor, ir: torch.Tensor) -> torch.Tensor:
    """mean(s·relu(c(IR) - c(F))), c = local contrast, s = IR saliency: a hot target stands out from its
    surroundings in the fused image at least as much as in the IR (the targets term alone asks only for
    its level, which a bright visible background around it can still swallow)."""
    return (ir_saliency(ir) * F.relu(local_contrast(ir) - local_contrast(fused))).mean()


def out_of_range_loss(fused: torch.Tensor) -> torch.Tensor:
    """mean(relu(-F) + relu(F - 1)): how far the raw (Tanh, [-1, 1]) output strays outside [0, 1]."""
    return (F.relu(-fused) + F.relu(fused - 1.0)).mean()


def source_loss(fused: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor, mse_vis: float = 3.0, mse_ir: float = 2.0,
                grad: float = 9.0, intensity: float = 0.0, background: float = 0.0, targets: float = 0.0,
                contrast: float = 0.0, out_of_range: float = 0.0, clamp: bool = False) -> dict[str, torch.Tensor]:
    """Source terms: mse_vis·MSE(F,Y) + mse_ir·MSE(F,IR) + grad·G(F; Y, IR) + intensity·L1(F, max(Y, IR))
    + background·mean((1 - s)|F - Y|) + targets·mean(s|F - max(Y, IR)|) (s: IR saliency)
    + contrast·mean(s·relu(c(IR) - c(F))) (c: local contrast) + out_of_range·mean(relu(-F) + relu(F - 1)).
    Returns every term and 'total'.

    The defaults are SAGE's student source terms (3, 2, 9, no intensity term, raw output).
    ``clamp``: the pixel and gradient terms see F clamped to [0, 1], the image inference writes (the
    network ends in Tanh, [-1, 1]); without it the loss can be satisfied by detail below 0 that the
    clamp at inference erases. The out-of-range term is what still pulls clamped pixels back.
    """
    seen = fused.clamp(0.0, 1.0) if clamp else fused
    terms = {
        "mse_vis": F.mse_loss(seen, vis_y),
        "mse_ir": F.mse_loss(seen, ir),
        "grad": max_gradient_loss(seen, vis_y, ir),
        "intensity": intensity_loss(seen, vis_y, ir),
        "out_of_range": out_of_range_loss(fused),
    }
    terms["background"], terms["targets"] = salient_intensity_losses(seen, vis_y, ir)
    terms["contrast"] = target_contrast_loss(seen, ir)
    weights = {"mse_vis": mse_vis, "mse_ir": mse_ir, "grad": grad, "intensity": intensity, "background": background,
               "targets": targets, "contrast": contrast, "out_of_range": out_of_range}
    terms["total"] = sum(weights[k] * terms[k] for k in weights)
    return terms


# --- distillation (SAGE's bi-level training) -------------------------------------------------------
# F = student output, T = teacher output, Y = visible luminance, IR = infrared (N x 1 x H x W).
# Masks are N x 4 x H x W in {0, 1}: SAM's 4 largest masks of the visible / IR image.

STUDENT_WEIGHTS = {"fuse": 3.0, "grad": 3.0, "cs": 1.0, "fea": 0.3}
TEACHER_WEIGHTS = {"mse_vis": 1.0, "mse_ir": 1.0, "grad": 2.0, "seg": 0.3, "student": 0.1, "fea": 0.01}
CS_SCALE = 1.0 / 3000.0
CS_EPS = 1e-7


def student_pixel_loss(fused: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_fuse = 3·MSE(F,Y) + 2·MSE(F,IR) + 4·MSE(F,T)."""
    return 3.0 * F.mse_loss(fused, vis_y) + 2.0 * F.mse_loss(fused, ir) + 4.0 * F.mse_loss(fused, teacher)


def student_gradient_loss(fused: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """L_grad = 9·G(F; Y, IR) + 3·L1(∇F, ∇T)."""
    return 9.0 * max_gradient_loss(fused, vis_y, ir) + 3.0 * F.l1_loss(sobel_magnitude(fused), sobel_magnitude(teacher))


def feature_loss(student_features, teacher_features) -> torch.Tensor:
    """L_fea = Σ over scales of (1 − cos(flatten(F_s), flatten(F_t))), per sample, mean over the batch."""
    total = 0.0
    for fs, ft in zip(student_features, teacher_features):
        total = total + (1.0 - F.cosine_similarity(fs.flatten(1), ft.flatten(1), dim=1)).mean()
    return total


def _instance_norm(x: torch.Tensor) -> torch.Tensor:
    return F.instance_norm(x, eps=1e-5)


def semantic_distance(phi, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(a, b) = Σ over Φ's blocks of ‖IN(Φ(a)) − IN(Φ(b))‖₂, per sample (returns N)."""
    total = 0.0
    for fa, fb in zip(phi(a), phi(b)):
        total = total + (_instance_norm(fa) - _instance_norm(fb)).flatten(1).norm(dim=1)
    return total


def contrastive_semantic_loss(phi, fused: torch.Tensor, teacher: torch.Tensor, vis_y: torch.Tensor, ir: torch.Tensor,
                              masks_vis: torch.Tensor, masks_ir: torch.Tensor) -> torch.Tensor:
    """L_cs = (1/3000)·Σ_k [ d(F·P_vis^k, T·P_vis^k) / (d(F·P_vis^k, Y·P_vis^k) + 1e-7)
                           + d(F·P_ir^k, T·P_ir^k) / (d(F·P_ir^k, IR·P_ir^k) + 1e-7) ], mean over the batch.

    The teacher is the positive (pulled closer), the source the negative (pushed away). Φ is a frozen
    truncated SAM encoder (``sage_edge.train.sam.TruncatedEncoder``); one batched call per operand.
    """
    n, k = masks_vis.shape[:2]
    masks = torch.cat([masks_vis, masks_ir], dim=1)  # N x 2k x H x W
    sources = torch.cat([vis_y.expand(-1, k, -1, -1), ir.expand(-1, k, -1, -1)], dim=1)
    flat = lambda t: t.reshape(-1, 1, *t.shape[-2:])  # noqa: E731 - (N·2k) x 1 x H x W
    f_masked = flat(fused * masks)
    positive = semantic_distance(phi, f_masked, flat(teacher * masks))
    negative = semantic_distance(phi, f_masked, flat(sources * masks))
    ratio = (positive / (negative + CS_EPS)).view(n, 2 * k)
    return CS_SCALE * ratio.sum(dim=1).mean()


def student_loss(fused, student_features, teacher, teacher_features, vis_y, ir, masks_vis=None, masks_ir=None,
                 phi=None) -> dict[str, torch.Tensor]:
    """Student total: 3·L_fuse + 3·L_grad + L_cs + 0.3·L_fea (L_cs is 0 without Φ or masks)."""
    terms = {
        "fuse": student_pixel_loss(fused, vis_y, ir, teacher),
        "grad": student_gradient_loss(fused, vis_y, ir, teacher),
        "cs": (contrastive_semantic_loss(phi, fused, teacher, vis_y, ir, masks_vis, masks_ir)
               if phi is not None and masks_vis is not None else fused.new_zeros(())),
        "fea": feature_loss(student_features, teacher_features),
    }
    terms["total"] = sum(STUDENT_WEIGHTS[k] * terms[k] for k in STUDENT_WEIGHTS)
    return terms


def teacher_loss(teacher, teacher_features, vis_y, ir, student=None, student_features=None, masks_vis=None,
                 masks_ir=None, phi=None, segmentation: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """Teacher total: MSE(T,Y) + MSE(T,IR) + 2·G(T; Y, IR) + 0.3·CE(seg(RGB(T)), labels)
    + 0.1·(student loss with the student as reference, no gradient to it) + 0.01·L_fea.

    ``segmentation`` is the CE term when guidance is on (else 0). Without ``student`` (teacher
    warm-up) the two student-feedback terms are 0.
    """
    zero = teacher.new_zeros(())
    terms = {
        "mse_vis": F.mse_loss(teacher, vis_y),
        "mse_ir": F.mse_loss(teacher, ir),
        "grad": max_gradient_loss(teacher, vis_y, ir),
        "seg": segmentation if segmentation is not None else zero,
        "student": zero,
        "fea": zero,
    }
    if student is not None:
        student = student.detach()
        student_features = [f.detach() for f in student_features]
        terms["student"] = student_loss(student, student_features, teacher, teacher_features, vis_y, ir,
                                        masks_vis, masks_ir, phi)["total"]
        terms["fea"] = feature_loss(student_features, teacher_features)
    terms["total"] = sum(TEACHER_WEIGHTS[k] * terms[k] for k in TEACHER_WEIGHTS)
    return terms
