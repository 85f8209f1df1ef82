"""scripts/split_pairs.py: the folds of the model card's held-out check."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "split_pairs.py"


def _dataset_root(root: Path, sizes: dict[str, int]) -> Path:
    for dataset, count in sizes.items():
        for kind in ("ir", "vis"):
            (root / dataset / kind).mkdir(parents=True)
            for index in range(count):
                cv2.imwrite(str(root / dataset / kind / f"{index:02d}.png"), np.full((8, 8), index, np.uint8))
    return root


def test_every_pair_lands_in_exactly_one_fold_and_every_fold_holds_every_dataset(tmp_path):
    data = _dataset_root(tmp_path / "data", {"TNO": 5, "MSRS": 4})
    out = tmp_path / "folds"
    result = subprocess.run([sys.executable, str(SCRIPT), str(data), str(out)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    members = json.loads((out / "folds.json").read_text())
    assert sorted(members) == ["A", "B"]
    everything = members["A"] + members["B"]
    assert sorted(everything) == sorted([f"TNO/{i:02d}" for i in range(5)] + [f"MSRS/{i:02d}" for i in range(4)])
    assert len(set(everything)) == 9 and abs(len(members["A"]) - len(members["B"])) <= 1
    for fold, pairs in members.items():
        assert {p.split("/")[0] for p in pairs} == {"TNO", "MSRS"}
        for pair in pairs:  # the links lead to the same images
            dataset, stem = pair.split("/")
            for kind in ("ir", "vis"):
                link = out / fold / dataset / kind / f"{stem}.png"
                assert link.is_symlink() and link.resolve() == (data / dataset / kind / f"{stem}.png").resolve()
    # a second run over the same folder gives the same folds (links replaced, not doubled)
    assert subprocess.run([sys.executable, str(SCRIPT), str(data), str(out)], capture_output=True).returncode == 0
    assert json.loads((out / "folds.json").read_text()) == members


def test_bad_fold_count_is_one_line(tmp_path):
    data = _dataset_root(tmp_path / "data", {"TNO": 2})
    result = subprocess.run([sys.executable, str(SCRIPT), str(data), str(tmp_path / "f"), "--folds", "1"],
                            capture_output=True, text=True)
    assert result.returncode == 2 and "--folds must be between 2 and 26" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_or_empty_data_is_one_line(tmp_path):
    (tmp_path / "empty").mkdir()
    for data in (tmp_path / "missing", tmp_path / "empty"):
        result = subprocess.run([sys.executable, str(SCRIPT), str(data), str(tmp_path / "f")],
                                capture_output=True, text=True)
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1 and lines[0].startswith("error: ")
        assert str(data) in lines[0]
