"""Loading and saving student weights. Never unpickles: ``weights_only=True`` or safetensors."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from sage_edge.atomic import atomic_path
from sage_edge.errors import SageEdgeError, first_line
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
            with warnings.catch_warnings():  # torch warns about pickle protocols on stderr: one line only
                warnings.simplefilter("ignore")
                state = torch.load(path, map_location="cpu", weights_only=True)
        else:
            raise SageEdgeError(f"{path}: unknown checkpoint type '{suffix}'; use .pt/.pth or .safetensors")
    except SageEdgeError:
        raise
    except Exception as exc:
        raise SageEdgeError(_unreadable(path, exc)) from None
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


def _unreadable(path: Path, exc: Exception) -> str:
    """Why a checkpoint could not be read, in words a user can act on (torch's own messages are internals)."""
    with open(path, "rb") as f:
        head = f.read(4)
    if not head:
        return f"{path}: empty file, not a checkpoint; copy or download it again"
    if path.suffix.lower() == ".safetensors":
        return f"{path}: not a readable safetensors file (corrupt or truncated?); copy or download it again"
    if head.startswith(b"PK"):  # torch.save's zip format
        return (f"{path}: corrupt or truncated PyTorch checkpoint (its zip archive is incomplete); "
                "copy or download it again")
    if "weights_only" in str(exc).lower() or "unpickl" in type(exc).__name__.lower():
        return (f"{path}: holds Python objects, not only tensors; sage-edge loads plain state_dicts only "
                "(weights_only=True, never full pickle): save one with torch.save(model.state_dict(), path)")
    if not head.startswith(b"\x80"):  # neither a zip archive nor a pickle
        return (f"{path}: not a PyTorch checkpoint (neither torch.save's zip format nor a pickle); give a "
                ".pt/.pth state_dict or a .safetensors file")
    first = first_line(exc)
    return f"{path}: cannot read checkpoint ({first[:120]})"


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
