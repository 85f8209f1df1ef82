"""Loading and saving student weights. Never unpickles: ``weights_only=True`` or safetensors."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError
from sage_edge.models.student import StudentNet

WEIGHT_SUFFIXES = (".pt", ".pth", ".safetensors")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise SageEdgeError(f"{path}: no such checkpoint file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        elif suffix in (".pt", ".pth"):
            state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise SageEdgeError(f"{path}: unknown checkpoint type '{suffix}'; use .pt/.pth or .safetensors")
    except SageEdgeError:
        raise
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SageEdgeError(f"{path}: cannot read checkpoint ({first[:200]})") from None
    # Training scripts often wrap the weights: {"state_dict": ...} or {"student": ...}.
    for key in ("state_dict", "model", "student"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise SageEdgeError(f"{path}: not a state_dict of tensors")
    # DataParallel / DDP checkpoints prefix every key with "module.".
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_student(path: str | os.PathLike) -> StudentNet:
    """A StudentNet in eval mode with the checkpoint's weights; one-line error on any key/shape mismatch."""
    state = load_state_dict(path)
    student = StudentNet()
    expected = student.state_dict()
    missing = sorted(expected.keys() - state.keys())
    unexpected = sorted(state.keys() - expected.keys())
    if missing or unexpected:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise SageEdgeError(f"{path}: not a SAGE student checkpoint: keys {', '.join(detail)}")
    wrong = [k for k in expected if tuple(expected[k].shape) != tuple(state[k].shape)]
    if wrong:
        k = wrong[0]
        raise SageEdgeError(
            f"{path}: not a SAGE student checkpoint: {len(wrong)} tensors of wrong shape "
            f"(e.g. {k}: {tuple(state[k].shape)}, expected {tuple(expected[k].shape)})"
        )
    student.load_state_dict(state)
    return student.eval()


def save_student_safetensors(student: StudentNet, path: str | os.PathLike, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    state = {k: v.detach().cpu().contiguous() for k, v in student.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
