"""Contact sheet of the night and dark shared pairs for the model card: IR | visible | published student | default.

    python scripts/night_contact_sheet.py [--data ../shared/data/ivif] [--published ../shared/data/sage_official/checkpoints.pt]
                                          [-o docs/images/default_night_pairs.png]

Both models run as users run them (``Fuser``, default border padding): the bundled default.onnx on ONNX
Runtime, the published weights on torch. Each tile is labelled with the pair, and each fused tile with its
mean grey level and the share of pixels at grey 0.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from sage_edge.evaluation import _thumbnail, labelled_grid
from sage_edge.imageio import read_ir, read_visible, write_image
from sage_edge.metrics import to_gray_levels
from sage_edge.pairs import find_datasets
from sage_edge.runtime.backend import open_backend
from sage_edge.runtime.fuser import Fuser
from sage_edge.zoo import resolve_model

# The dark shared pairs: the two MSRS night scenes, TNO's dark garden, and VIFB's two night road scenes.
NIGHT_PAIRS = ("MSRS/00858N", "MSRS/01023N", "TNO/07", "VIFB/nightCar", "VIFB/carLight")
TILE_HEIGHT = 240


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data/ivif")
    parser.add_argument("--published", default="../shared/data/sage_official/checkpoints.pt")
    parser.add_argument("-o", "--output", default="docs/images/default_night_pairs.png")
    args = parser.parse_args()

    pairs = {f"{name}/{p.stem}": p for name, found in find_datasets(args.data).items() for p in found}
    rows = []
    with open_backend(resolve_model("default")) as default, open_backend(args.published, "torch") as published:
        models = (("published student", Fuser(published)), ("default", Fuser(default)))
        for key in NIGHT_PAIRS:
            ir, vis = read_ir(pairs[key].ir), read_visible(pairs[key].vis)
            tiles = [(f"IR {key}", ir), ("visible", vis)]
            for label, fuser in models:
                fused = fuser.fuse(ir, vis)
                grey = to_gray_levels(fused)
                tiles.append((f"{label}: mean {grey.mean():.0f}, {100 * np.mean(grey == 0):.0f} % at 0", fused))
            rows.append([(text, _thumbnail(image, TILE_HEIGHT)) for text, image in tiles])
    sheet = labelled_grid(rows)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    write_image(Path(args.output), sheet)
    print(f"wrote {args.output} ({sheet.shape[1]}x{sheet.shape[0]})")


if __name__ == "__main__":
    cv2.setNumThreads(1)
    main()
