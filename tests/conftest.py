"""Shared fixtures. Real data is read from ../shared/data (never copied into the repo)."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("SAGE_EDGE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
IVIF = SHARED_DATA / "ivif"
OFFICIAL_DIR = SHARED_DATA / "sage_official"
OFFICIAL_CHECKPOINT = OFFICIAL_DIR / "checkpoints.pt"
M3FD_GOLDEN_STEMS = ("00000", "00001", "00003", "00005")


# Why a test skips on a clone without the project's shared data folder, and where that data comes from.
SHARED_DATA_SKIP_REASON = (
    f"needs the project's shared test data at {SHARED_DATA} (not in the repository; set SAGE_EDGE_SHARED_DATA "
    "to its location): ivif/ holds 45 registered IR/visible pairs (TNO, RoadScene, MSRS, M3FD, VIFB), unmodified "
    "copies of files in public GitHub repositories (Zhaozixiang1228/MMIF-CDDFuse, hanna-xu/RoadScene, "
    "Linfeng-Tang/VIF-Benchmark, RollingPlain/SAGE_IVIF, JinyuanLiu-CV/TarDAL, xingchenzhang/VIFB) at the commits "
    "listed in ivif/SOURCES.md; sage_official/ holds the published SAGE student checkpoints.pt and its fused "
    "outputs (RollingPlain/SAGE_IVIF @ 377fdbe, MIT)"
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not SHARED_DATA.is_dir():
        skip = pytest.mark.skip(reason=SHARED_DATA_SKIP_REASON)
        for item in items:
            if "shared_data" in item.fixturenames:
                item.add_marker(skip)


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    """README's test command runs pytest -q, which hides skip reasons: say once why a clone without the
    shared data skips so many tests, and how to run them."""
    skipped = [r for r in terminalreporter.stats.get("skipped", []) if SHARED_DATA_SKIP_REASON in str(r.longrepr)]
    if skipped:
        tests = f"{len(skipped)} test{'s' * (len(skipped) != 1)}"
        terminalreporter.write_line(f"{tests} skipped: no shared test data at {SHARED_DATA}; set SAGE_EDGE_SHARED_DATA "
                                    "to a copy to run them (README.md says where it comes from)")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return SHARED_DATA


@pytest.fixture(scope="session")
def ivif_dir(shared_data: Path) -> Path:
    return shared_data / "ivif"


@pytest.fixture(scope="session")
def official_checkpoint(shared_data: Path) -> Path:
    return OFFICIAL_CHECKPOINT


@pytest.fixture(scope="session")
def official_onnx(tmp_path_factory: pytest.TempPathFactory, official_checkpoint: Path) -> Path:
    """The published student exported as the default uint8 end-to-end graph (once per session)."""
    # The Jetson-like run (scripts/test_jetson_like.sh) has no torch, as on a Jetson: skip, don't error.
    pytest.importorskip("torch", reason="exporting the published student needs torch (the main suite runs this)")
    from sage_edge.export.onnx_export import export_onnx
    from sage_edge.models.checkpoint import load_student

    path = tmp_path_factory.mktemp("official") / "sage_official_uint8.onnx"
    export_onnx(load_student(official_checkpoint), path, io_kind="uint8")
    return path


@pytest.fixture(scope="session")
def default_gate_run(ivif_dir: Path, official_onnx: Path):
    """``evaluate`` over all 45 shared pairs: the bundled default and the published student (the reference), both
    ONNX with their default border padding, scored on the quality-gate metrics. Computed once per session."""
    from sage_edge.evaluation import evaluate
    from sage_edge.quality_gates import MEANS_METRICS
    from sage_edge.zoo import resolve_model

    return evaluate(ivif_dir, [str(resolve_model("default")), str(official_onnx)], metrics=MEANS_METRICS,
                    grid_pairs=0, progress=False, reference=str(official_onnx))


@pytest.fixture()
def isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty model cache (SAGE_EDGE_CACHE) for this test only."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("SAGE_EDGE_CACHE", str(cache))
    return cache


@pytest.fixture()
def official_in_cache(isolated_cache: Path, official_checkpoint: Path) -> Path:
    """sage-official fetched into an isolated cache from a file:// URL into ../shared."""
    from sage_edge import zoo

    return zoo.fetch("sage-official", url=official_checkpoint.resolve().as_uri(), progress=False)


@pytest.fixture(scope="session")
def demo_pair() -> tuple[Path, Path]:
    """(IR, visible) files of the pair bundled in the package (MSRS 00858N): real data, always present."""
    from sage_edge.samples import demo_pair as bundled

    return bundled()


@pytest.fixture()
def synthetic_pair() -> tuple[np.ndarray, np.ndarray]:
    from sage_edge.samples import synthetic_pair as make

    return make(96, 128, seed=1)


@pytest.fixture(scope="module")
def torch_one_thread():
    """Small tensors on a 2-core machine: one torch thread avoids oversubscription (3-4x faster here)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# Test doubles of tensorrt/pycuda (tests/doubles/) are imported as top-level modules.
sys.path.insert(0, str(Path(__file__).parent / "doubles"))


@pytest.fixture()
def doubles(monkeypatch):
    """``doubles(version, gpu=None, **options)`` installs the TensorRT/pycuda TEST DOUBLES into sys.modules."""
    import install as doubles_install  # tests/doubles/install.py

    def install(version: str, gpu: dict | None = None, **options):
        return doubles_install.install(monkeypatch, version, gpu, **options)

    return install


def run_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300):
    """Run ``sage-edge`` in a subprocess, as a user would; returns CompletedProcess (text)."""
    import subprocess

    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "sage_edge.cli", *map(str, args)],
        capture_output=True, text=True, env=full_env, cwd=cwd, timeout=timeout,
    )
