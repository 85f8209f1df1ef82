"""runtime/, export/ and sage_edge/ run on Python 3.8 (JetPack 5.1: its TensorRT bindings exist only for 3.8).

Three layers, cheapest first:
* vermin (pinned in the test extra) over the three trees, target 3.8. Every module that has annotations
  has ``from __future__ import annotations``, so annotations are never evaluated and vermin leaves them
  alone, except in modules that evaluate them on purpose (typing.get_type_hints), which it checks with
  --eval-annotations.
* an AST scan for what vermin does not see outside annotations: PEP 585 generics (``dict[str, int]``)
  and PEP 604 unions (``int | None``) in expressions that run.
* the real thing (marked ``py38``, deselect with ``-m "not py38"``): a fresh Python 3.8 venv,
  ``pip install .`` (the torch-free base install, its numpy/onnxruntime/opencv wheels resolved for 3.8),
  then ``sage-edge fuse`` on a synthetic pair and ``sage-edge check-trt`` on the bundled model.
"""
from __future__ import annotations

import ast
import glob
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO_ROOT

TREES = ("runtime", "export", "sage_edge")
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
TYPE_NAMES = BUILTIN_GENERICS | {"int", "float", "str", "bytes", "bool", "complex"}


def _modules() -> list[Path]:
    return sorted(p for tree in TREES for p in (REPO_ROOT / tree).rglob("*.py") if "__pycache__" not in p.parts)


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (never evaluated under ``from __future__ import annotations``)."""
    inside: set[int] = set()
    for node in ast.walk(tree):
        annotations = []
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            annotations.append(node.returns)
            args = node.args
            for arg in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if arg is not None:
                    annotations.append(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            annotations.append(node.annotation)
        for annotation in annotations:
            if annotation is not None:
                inside.update(id(n) for n in ast.walk(annotation))
    return inside


def _is_type_expression(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name) and node.id in TYPE_NAMES:
        return True
    return isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS


def _runtime_generics(path: Path, root: Path = REPO_ROOT) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    skip = _annotation_nodes(tree)
    where = path.relative_to(root)
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id in BUILTIN_GENERICS:
            found.append(f"{where}:{node.lineno}: {node.value.id}[...] runs (PEP 585, 3.9+)")
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr) and (
                _is_type_expression(node.left) or _is_type_expression(node.right)):
            found.append(f"{where}:{node.lineno}: X | Y on types runs (PEP 604, 3.10+)")
    return found


def test_annotations_are_never_evaluated():
    """Every module with annotations postpones them, and none evaluates them behind vermin's back."""
    missing, evaluating = [], []
    for path in _modules():
        text = path.read_text()
        if _annotation_nodes(ast.parse(text, str(path))) and "from __future__ import annotations" not in text:
            missing.append(str(path.relative_to(REPO_ROOT)))
        if "get_type_hints" in text or ".__annotations__" in text:
            evaluating.append(path)
    assert not missing, f"modules without `from __future__ import annotations`: {missing}"
    if evaluating:
        _vermin(*evaluating, eval_annotations=True)


def test_no_runtime_generics_or_unions():
    found = [line for path in _modules() for line in _runtime_generics(path)]
    assert not found, "\n".join(found)


def test_runtime_generics_scan_can_fail(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from __future__ import annotations\nAlias = dict[str, int]\n"
                       "def f(x: dict[str, int] | None) -> list[int]:\n    return isinstance(x, int | None)\n")
    found = _runtime_generics(planted, root=tmp_path)
    assert [line.split(": ", 1)[0] for line in found] == ["planted.py:2", "planted.py:4"]


def _vermin(*paths: Path, eval_annotations: bool = False) -> None:
    pytest.importorskip("vermin", reason="vermin is in the test extra: pip install -e '.[test]'")
    args = [sys.executable, "-c", "import sys, vermin; sys.exit(vermin.main())", "-t=3.8-", "--no-tips", "--violations", "--no-parse-comments",
            "--eval-annotations" if eval_annotations else "--no-eval-annotations", *map(str, paths)]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, f"3.9+ constructs (vermin -t=3.8-):\n{result.stdout}{result.stderr}"


def test_vermin_finds_nothing_newer_than_python38():
    _vermin(*(REPO_ROOT / tree for tree in TREES))


def test_vermin_can_fail(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("from importlib import resources\nROOT = resources.files('sage_edge')\n")
    with pytest.raises(AssertionError, match="importlib.resources.files"):
        _vermin(planted)


# --- the real Python 3.8 -------------------------------------------------------------------------------------

def _python38() -> str | None:
    """A working Python 3.8 (a pyenv shim on PATH may exist without being usable, so each one is tried)."""
    candidates = [os.environ.get("SAGE_EDGE_PYTHON38")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates.append(shutil.which("python3.8"))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            probe = _run(candidate, "-c", "import sys, venv; print(sys.version_info[:2])", timeout=60)
            if probe.returncode == 0 and probe.stdout.strip() == "(3, 8)":
                return candidate
    return None


def _wheelhouse() -> Path:
    """Wheels for 3.8 kept between runs (the first run downloads ~110 MB from PyPI)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("SAGE_EDGE_PY38_WHEELHOUSE", Path(base) / "sage-edge-tests" / "py38-wheelhouse"))


def _run(*args: object, cwd: Path | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run outside the repository (Python puts the working directory on sys.path; it must not find sage_edge/)."""
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd=str(cwd or Path(os.sep)))


@pytest.mark.py38
@pytest.mark.slow
def test_fresh_python38_install_fuses_and_checks(tmp_path, synthetic_pair):
    python38 = _python38()
    if python38 is None:
        pytest.skip("no python3.8 here (set SAGE_EDGE_PYTHON38, or install it, e.g. pyenv install 3.8)")
    import cv2

    # pip builds in the source tree: install from a copy of what setup.cfg packages.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("setup.cfg", "setup.py", "pyproject.toml", "README.md"):
        shutil.copy2(REPO_ROOT / name, source / name)
    for tree in ("sage_edge", "export", "runtime", "train"):
        shutil.copytree(REPO_ROOT / tree, source / tree, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))

    venv = tmp_path / "venv38"
    created = _run(python38, "-m", "venv", venv, timeout=120)
    assert created.returncode == 0, created.stderr
    pip = [venv / "bin" / "python", "-m", "pip"]
    wheels = _wheelhouse()
    offline = [*pip, "install", "--quiet", "--no-compile", "--no-index", "--find-links", wheels, source, "onnx"]
    installed = _run(*offline)
    if installed.returncode != 0:  # first run, or the requirements changed: fetch the 3.8 wheels once
        wheels.mkdir(parents=True, exist_ok=True)
        fetched = _run(*pip, "download", "--quiet", "--dest", wheels, "setuptools>=64", "wheel", source, "onnx",
                       timeout=600)
        assert fetched.returncode == 0, fetched.stderr[-3000:]
        installed = _run(*offline)
    assert installed.returncode == 0, installed.stderr[-3000:]

    sage_edge = venv / "bin" / "sage-edge"
    ir, vis = synthetic_pair
    cv2.imwrite(str(tmp_path / "ir.png"), ir)
    cv2.imwrite(str(tmp_path / "vis.png"), vis)
    fused = _run(sage_edge, "fuse", tmp_path / "ir.png", tmp_path / "vis.png", "-o", tmp_path / "fused38.png",
                 cwd=tmp_path)
    assert fused.returncode == 0, fused.stderr
    # The same bundled model through this Python's ONNX Runtime: the same pixels, within one level.
    from sage_edge.runtime.backend import open_backend
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.zoo import resolve_model

    with open_backend(resolve_model("default", want="onnx")) as backend:
        here = Fuser(backend).fuse(ir, vis)
    there = cv2.imread(str(tmp_path / "fused38.png"))
    assert there.shape == here.shape and np.abs(there.astype(int) - here.astype(int)).max() <= 1

    bundled = _run(venv / "bin" / "python", "-c",
                   "from sage_edge.zoo import resolve_model; print(resolve_model('default', want='onnx'))",
                   cwd=tmp_path)
    assert bundled.returncode == 0, bundled.stderr
    bundled_path = Path(bundled.stdout.strip())
    assert "site-packages" in bundled_path.parts  # the installed copy, with its package data
    checked = _run(sage_edge, "check-trt", bundled_path, cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [line.split(" (")[0] for line in checked.stdout.splitlines()] == [
        "TensorRT 8.5: OK", "TensorRT 8.6: OK", "TensorRT 10: OK", "TensorRT 11: OK"]
    version = _run(venv / "bin" / "python", "-c", "import sys; print(sys.version_info[:2])")
    assert version.stdout.strip() == "(3, 8)"
