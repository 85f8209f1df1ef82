"""Training checkpoints: safetensors for every tensor, JSON for everything else. Never pickle.

A checkpoint is two files in ``RUN_DIR/checkpoint/``:

* ``last.safetensors``: model weights (``student.*``, ``teacher.*``) and optimizer state tensors
  (``optim.<name>.<param index>.<key>``, e.g. Adam's ``exp_avg``, ``exp_avg_sq``, ``step``);
* ``last.json``: the run config, the step counters, optimizer param groups and scheduler state
  (plain numbers) and the ``token`` that ties it to its safetensors file (written last).

Resuming checks the config: anything that changes the shapes or the meaning of the saved state
(``RESUME_KEYS``) must match, else a one-line error.
"""
from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import torch

from sage_edge.atomic import atomic_path, write_bytes_atomic
from sage_edge.errors import SageEdgeError

RESUME_KEYS = ("teacher_width", "batch_size", "crop_height", "crop_width", "epochs", "teacher_warmup_epochs",
               "steps_per_epoch", "lr_student", "lr_teacher", "lr_min", "seed")


def checkpoint_paths(run_dir: str | os.PathLike) -> tuple[Path, Path]:
    folder = Path(run_dir) / "checkpoint"
    return folder / "last.safetensors", folder / "last.json"


def _optimizer_split(name: str, optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    state = optimizer.state_dict()
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim.{name}.{index}.{key}"] = value.detach().cpu().contiguous()
            else:
                scalars[f"{index}.{key}"] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def _optimizer_join(name: str, tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    prefix = f"optim.{name}."
    for key, value in tensors.items():
        if key.startswith(prefix):
            index, field = key[len(prefix):].split(".", 1)
            state.setdefault(int(index), {})[field] = value
    for key, value in meta["scalars"].items():
        index, field = key.split(".", 1)
        state.setdefault(int(index), {})[field] = value
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(run_dir, models: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    schedulers: dict[str, object], config: dict, progress: dict) -> Path:
    from safetensors.torch import save_file

    weights_path, json_path = checkpoint_paths(run_dir)
    weights_path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    tensors: dict[str, torch.Tensor] = {}
    for name, model in models.items():
        for key, value in model.state_dict().items():
            tensors[f"{name}.{key}"] = value.detach().cpu().contiguous()
    optim_meta = {}
    for name, optimizer in optimizers.items():
        t, meta = _optimizer_split(name, optimizer)
        tensors.update(t)
        optim_meta[name] = meta
    with atomic_path(weights_path) as tmp:
        save_file(tensors, str(tmp), metadata={"token": token})
    document = {"token": token, "config": config, "progress": progress, "optimizers": optim_meta,
                "schedulers": {name: s.state_dict() for name, s in schedulers.items()}}
    write_bytes_atomic(json_path, json.dumps(document, indent=1, default=float).encode())
    return weights_path


def check_compatible(saved: dict, config: dict, run_dir) -> None:
    for key in RESUME_KEYS:
        if key in saved and key in config and saved[key] != config[key]:
            raise SageEdgeError(f"{run_dir}: cannot resume: the run has {key}={saved[key]!r}, "
                                f"this config has {key}={config[key]!r}")


def load_checkpoint(run_dir, models: dict[str, torch.nn.Module], optimizers: dict[str, torch.optim.Optimizer],
                    schedulers: dict[str, object], config: dict) -> dict:
    """Restores models, optimizers and schedulers in place; returns the saved progress dict."""
    from safetensors import safe_open

    weights_path, json_path = checkpoint_paths(run_dir)
    if not json_path.is_file() or not weights_path.is_file():
        raise SageEdgeError(f"{run_dir}: nothing to resume (no checkpoint/last.json)")
    try:
        document = json.loads(json_path.read_text())
        with safe_open(str(weights_path), framework="pt", device="cpu") as f:
            token = (f.metadata() or {}).get("token")
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001
        raise SageEdgeError(f"{run_dir}: unreadable checkpoint ({str(exc).splitlines()[0][:120]})") from None
    if token != document.get("token"):
        raise SageEdgeError(f"{run_dir}: checkpoint files do not belong together (interrupted save?)")
    check_compatible(document.get("config", {}), config, run_dir)
    for name, model in models.items():
        prefix = f"{name}."
        state = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
        expected = model.state_dict()
        if set(state) != set(expected) or any(state[k].shape != expected[k].shape for k in expected):
            raise SageEdgeError(f"{run_dir}: cannot resume: the saved {name} does not match this {name} network")
        model.load_state_dict(state)
    for name, optimizer in optimizers.items():
        try:
            optimizer.load_state_dict(_optimizer_join(name, tensors, document["optimizers"][name]))
        except (KeyError, ValueError) as exc:
            raise SageEdgeError(f"{run_dir}: cannot resume the {name} optimizer ({exc})") from None
    for name, scheduler in schedulers.items():
        scheduler.load_state_dict(document["schedulers"][name])
    return document["progress"]
