"""Split a root of IR/visible datasets into K folds for a held-out check of a training recipe.

    python scripts/split_pairs.py ../shared/data/ivif runs/folds --folds 2

writes runs/folds/A/<dataset>/{ir,vis}/ and runs/folds/B/... (symbolic links to the images) and
runs/folds/folds.json. Pairs are sorted by name within each dataset and dealt out in turn, so every fold
holds a share of every dataset. Train on all folds but one, judge on that one:

    sage-edge train source --data runs/folds/A --out runs/cv-A --threads 1
    sage-edge eval --data runs/folds/B --model runs/cv-A/student.safetensors --model sage-official

(the model card's "Held-out check" was made this way).
"""
from __future__ import annotations

import argparse
import json
import os
import string
import sys
from pathlib import Path

from sage_edge.atomic import write_bytes_atomic
from sage_edge.errors import SageEdgeError, first_line
from sage_edge.pairs import find_datasets


def split_pairs(data: Path, out: Path, folds: int) -> dict[str, list[str]]:
    datasets = find_datasets(data)  # one line (SageEdgeError) for a missing folder or one without pairs
    names = list(string.ascii_uppercase[:folds])
    members: dict[str, list[str]] = {name: [] for name in names}
    in_order = [(dataset, pair) for dataset in sorted(datasets)
                for pair in sorted(datasets[dataset], key=lambda p: p.stem)]
    for turn, (dataset, pair) in enumerate(in_order):
        fold = names[turn % folds]
        members[fold].append(f"{dataset}/{pair.stem}")
        for kind, image in (("ir", pair.ir), ("vis", pair.vis)):
            link = out / fold / dataset / kind / image.name
            link.parent.mkdir(parents=True, exist_ok=True)
            if link.is_symlink() or link.exists():
                link.unlink()
            os.symlink(image.resolve(), link)
    write_bytes_atomic(out / "folds.json", (json.dumps(members, indent=1) + "\n").encode())
    return members


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="root of dataset folders (as shared/data/ivif)")
    parser.add_argument("out", type=Path, help="where the fold folders go")
    parser.add_argument("--folds", type=int, default=2, help="number of folds (2 to 26) [2]")
    args = parser.parse_args(argv)
    if not 2 <= args.folds <= 26:
        parser.error(f"--folds must be between 2 and 26, got {args.folds}")
    try:
        members = split_pairs(args.data, args.out, args.folds)
    except (SageEdgeError, OSError) as exc:
        print(f"error: {first_line(exc)}", file=sys.stderr)
        return 1
    for fold, pairs in members.items():
        print(f"{args.out / fold}: {len(pairs)} pairs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
