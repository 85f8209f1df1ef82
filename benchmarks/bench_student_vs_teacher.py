"""Student vs SAGE's teacher path (teacher + SAM image encoder), same input, measured side by side in one run.

What SAGE needs at inference without distillation: SAM's ViT image encoder on BOTH the visible
and the IR image (SAM resizes the longest side to 1024 and pads to 1024 x 1024), then the teacher
(five SPA stages) on Y, IR and the two mask-weighted patch stacks. The student needs neither.

    python benchmarks/bench_student_vs_teacher.py [--width 640 --height 480] [--rounds 2] [--threads 2]

All three networks run in torch eager on the CPU with the same thread count, their iterations
interleaved round by round (student, teacher, SAM, student, ...) so machine noise hits them alike.
The student also runs in ONNX Runtime (the bare float graph), the way sage-edge deploys it.
Weights: the published student when ../shared/data/sage_official/checkpoints.pt exists (else random);
teacher and SAM ViT-B with random weights (the cost does not depend on the values). The teacher is
``sage_edge.train.teacher.TeacherNet`` (width 1.0, the published size); SAM's encoder is built from
segment_anything's own ``ImageEncoderViT`` with the ViT-B settings of ``build_sam_vit_b``, loaded
through ``sage_edge.train.sam.segment_anything_modules`` (torchvision is not needed). SAM's automatic
mask generator (a 32 x 32 point grid through the mask decoder, plus NMS) is NOT timed: the real
teacher path is slower than what is printed here.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import cv2
import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
OFFICIAL = REPO.parent / "shared" / "data" / "sage_official" / "checkpoints.pt"
IVIF = REPO.parent / "shared" / "data" / "ivif"


def real_pair(width: int, height: int) -> tuple[np.ndarray, np.ndarray, str]:
    from sage_edge.imageio import read_ir, read_visible
    from sage_edge.pairs import find_datasets
    from sage_edge.samples import synthetic_pair

    datasets = find_datasets(IVIF) if IVIF.is_dir() else {}
    if "M3FD" in datasets or datasets:
        name = "M3FD" if "M3FD" in datasets else sorted(datasets)[0]
        pair = datasets[name][0]
        ir, vis = read_ir(pair.ir), read_visible(pair.vis)
        if vis.ndim == 2:
            vis = np.repeat(vis[..., None], 3, axis=2)
        ir = cv2.resize(ir, (width, height), interpolation=cv2.INTER_AREA)
        vis = cv2.resize(vis, (width, height), interpolation=cv2.INTER_AREA)
        return ir, vis, f"{name}/{pair.stem}"
    ir, vis = synthetic_pair(height, width, seed=0)
    return ir, vis, "synthetic_pair(seed 0)"


def sam_vit_b_encoder() -> torch.nn.Module:
    from sage_edge.train.sam import segment_anything_modules

    modeling = segment_anything_modules().modeling
    return modeling.ImageEncoderViT(
        depth=12, embed_dim=768, img_size=1024, mlp_ratio=4, norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=12, patch_size=16, qkv_bias=True, use_rel_pos=True, global_attn_indexes=[2, 5, 8, 11],
        window_size=14, out_chans=256,
    ).eval()


def sam_input(image_bgr: np.ndarray) -> torch.Tensor:
    """SAM's preprocessing: RGB, longest side 1024, ImageNet normalisation, zero pad to 1024 x 1024."""
    rgb = image_bgr[..., ::-1] if image_bgr.ndim == 3 else np.repeat(image_bgr[..., None], 3, axis=2)
    h, w = rgb.shape[:2]
    scale = 1024 / max(h, w)
    resized = cv2.resize(np.ascontiguousarray(rgb), (round(w * scale), round(h * scale)))
    x = torch.from_numpy(resized).permute(2, 0, 1).float()
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1)
    x = (x - mean) / std
    return torch.nn.functional.pad(x, (0, 1024 - x.shape[2], 0, 1024 - x.shape[1]))[None]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1000.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (teacher and SAM once each)")
    parser.add_argument("--student-iterations", type=int, default=5, help="student runs per round")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import onnxruntime as ort

    from sage_edge import colour
    from sage_edge.export.onnx_export import export_onnx, feed_for
    from sage_edge.models.checkpoint import load_student
    from sage_edge.models.end_to_end import FusedLuminance
    from sage_edge.models.student import StudentNet
    from sage_edge.train.teacher import TeacherNet, masked_sources, parameter_count

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    ir, vis, source = real_pair(args.width, args.height)
    student_net = load_student(OFFICIAL) if OFFICIAL.is_file() else StudentNet()
    student = FusedLuminance(student_net.eval()).eval()
    teacher = TeacherNet(width=1.0).eval()
    sam = sam_vit_b_encoder()

    y_levels, _, _ = colour.ycrcb_from_bgr_image(vis)
    y = torch.from_numpy(colour.to_unit(y_levels))[None, None].float()
    ir_t = torch.from_numpy(colour.to_unit(ir.astype(np.float32)))[None, None].float()
    # Four binary masks per image, as SAM's 4 largest segments would give (values do not change the cost).
    gen = torch.Generator().manual_seed(0)
    masks_vis = (torch.rand(1, 4, args.height, args.width, generator=gen) > 0.5).float()
    masks_ir = (torch.rand(1, 4, args.height, args.width, generator=gen) > 0.5).float()
    p_vis, p_ir = masked_sources(y, ir_t, masks_vis, masks_ir)
    sam_vis, sam_ir = sam_input(vis), sam_input(ir)

    with tempfile.TemporaryDirectory() as scratch:
        onnx_path = Path(scratch) / "student_float.onnx"
        export_onnx(student_net, onnx_path, io_kind="float")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        feed = feed_for("float", ir, vis)

        times: dict[str, list[float]] = {"student torch": [], "student onnxruntime": [], "teacher torch": [],
                                         "SAM ViT-B encoder torch (1 image)": []}
        with torch.inference_mode():
            student(y, ir_t)
            session.run(None, feed)  # warm-up (teacher and SAM warm up in their first round, excluded below)
            for round_index in range(args.rounds + 1):
                keep = round_index > 0
                for _ in range(args.student_iterations):
                    a = timed(lambda: student(y, ir_t))
                    b = timed(lambda: session.run(None, feed))
                    if keep:
                        times["student torch"].append(a)
                        times["student onnxruntime"].append(b)
                t = timed(lambda: teacher(y, ir_t, p_vis, p_ir))
                s = timed(lambda: sam(sam_vis if round_index % 2 == 0 else sam_ir))
                if keep:
                    times["teacher torch"].append(t)
                    times["SAM ViT-B encoder torch (1 image)"].append(s)
                print(f"round {round_index}{'' if keep else ' (warm-up)'}: teacher {t:.0f} ms, SAM encoder {s:.0f} ms",
                      file=sys.stderr, flush=True)

    med = {k: statistics.median(v) for k, v in times.items()}
    teacher_path = med["teacher torch"] + 2 * med["SAM ViT-B encoder torch (1 image)"]
    params = {"student": parameter_count(student_net), "teacher": parameter_count(teacher),
              "SAM ViT-B encoder": parameter_count(sam)}
    print(f"input: {source} at {args.width}x{args.height}; SAM at 1024x1024; torch {torch.__version__}, "
          f"onnxruntime {ort.__version__}, {args.threads} threads; {args.rounds} rounds "
          f"(student x{args.student_iterations} per round); medians")
    print(f"parameters: student {params['student']:,}, teacher {params['teacher']:,}, "
          f"SAM ViT-B encoder {params['SAM ViT-B encoder']:,}")
    for name, value in med.items():
        print(f"  {name:<36} {value:10.1f} ms")
    print(f"  {'teacher + 2 x SAM encoder (torch)':<36} {teacher_path:10.1f} ms")
    print(f"ratio teacher path / student (both torch eager): {teacher_path / med['student torch']:.1f}x")
    print(f"ratio teacher path / student onnxruntime:        {teacher_path / med['student onnxruntime']:.1f}x")
    print(f"ratio teacher alone / student (torch):           {med['teacher torch'] / med['student torch']:.1f}x")
    print("(SAM's automatic mask generation - point-grid decoding and NMS - is not included)")


if __name__ == "__main__":
    main()
