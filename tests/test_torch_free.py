"""The runtime and `sage-edge fuse` with an ONNX model never need torch."""
from __future__ import annotations

import ast
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

from conftest import REPO_ROOT

# Modules a Jetson imports to fuse: none may import torch, even lazily.
TORCH_FREE_SOURCES = sorted((REPO_ROOT / "runtime").glob("*.py")) + [
    REPO_ROOT / "sage_edge" / name
    for name in ("__init__.py", "cli.py", "colour.py", "imageio.py", "pairs.py", "thermal.py", "zoo.py",
                 "io_contract.py", "atomic.py", "errors.py", "samples.py")
] + [REPO_ROOT / "sage_edge" / "commands" / name for name in ("fuse.py", "fetch.py", "options.py")]


@pytest.mark.parametrize("source", TORCH_FREE_SOURCES, ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_source_never_imports_torch(source: Path) -> None:
    tree = ast.parse(source.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        assert not any(n == "torch" or n.startswith("torch.") for n in names), f"{source}:{node.lineno} imports torch"


BLOCK_TORCH = "import sys; sys.modules['torch'] = None\n"


def test_runtime_fuses_with_torch_unimportable(official_onnx, ivif_dir):
    code = BLOCK_TORCH + f"""
import numpy as np
from sage_edge.imageio import read_ir, read_visible
from sage_edge.runtime import Fuser, open_backend
ir = read_ir({str(ivif_dir / 'MSRS/ir/00537D.png')!r}); vis = read_visible({str(ivif_dir / 'MSRS/vis/00537D.png')!r})
with open_backend({str(official_onnx)!r}) as backend:
    out = Fuser(backend).fuse(ir, vis)
assert out.shape == vis.shape and out.dtype == np.uint8 and out.std() > 10
assert sys.modules['torch'] is None
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_fuse_cli_with_torch_unimportable(tmp_path, official_onnx, ivif_dir):
    out = tmp_path / "fused.jpg"
    code = BLOCK_TORCH + "from sage_edge.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "fuse", str(ivif_dir / "VIFB/ir/fight.jpg"), str(ivif_dir / "VIFB/vis/fight.jpg"),
         "-o", str(out), "--model", str(official_onnx)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert out.read_bytes()[:2] == b"\xff\xd8"  # JPEG by extension


def test_torch_model_without_torch_is_a_one_line_error(tmp_path, official_checkpoint, ivif_dir):
    code = BLOCK_TORCH + "from sage_edge.cli import main; main()"
    result = subprocess.run(
        [sys.executable, "-c", code, "fuse", str(ivif_dir / "VIFB/ir/fight.jpg"), str(ivif_dir / "VIFB/vis/fight.jpg"),
         "-o", str(tmp_path / "f.png"), "--model", str(official_checkpoint)],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and "need torch" in result.stderr
    assert not (tmp_path / "f.png").exists()


@pytest.mark.slow
def test_base_install_in_a_fresh_venv_fuses(tmp_path, official_onnx, ivif_dir):
    """README's main job: `pip install .` (base, no extras) into an empty venv, then fuse with the bundled model."""
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    python = env_dir / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO_ROOT)],
        capture_output=True, text=True, timeout=900, cwd=tmp_path,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    no_torch = subprocess.run([str(python), "-c", "import torch"], capture_output=True, text=True)
    assert no_torch.returncode != 0
    import cv2

    env = {**os.environ, "PYTHONPATH": ""}
    for model_args, pair, shape in (
        ([], "M3FD/{}/00000.png", (768, 1024, 3)),  # the bundled default, exactly as README runs it
        (["--model", str(official_onnx)], "TNO/{}/07.png", (256, 256)),  # TNO visible is grey -> grey output
    ):
        out = tmp_path / "fused.png"
        result = subprocess.run(
            [str(env_dir / "bin" / "sage-edge"), "fuse", str(ivif_dir / pair.format("ir")),
             str(ivif_dir / pair.format("vis")), "-o", str(out), *model_args],
            capture_output=True, text=True, timeout=300, cwd=tmp_path, env=env,
        )
        assert result.returncode == 0, result.stderr
        assert cv2.imread(str(out), cv2.IMREAD_UNCHANGED).shape == shape
