"""Pairing IR and visible files by stem: the one place datasets are laid out.

A dataset folder holds an IR folder and a visible folder whose files share
stems (``ir/00001.png`` with ``vis/00001.jpg``). Accepted folder names, in
order of preference, are listed in ``IR_DIR_NAMES`` / ``VIS_DIR_NAMES``
(``ir``/``vis`` and SAGE's ``Ir``/``Vis`` among them). A root may also hold
several dataset folders (as ``shared/data/ivif`` does).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from sage_edge.errors import SageEdgeError
from sage_edge.imageio import IMAGE_EXTENSIONS

IR_DIR_NAMES = ("ir", "Ir", "IR", "infrared", "Infrared", "thermal")
VIS_DIR_NAMES = ("vis", "Vis", "VIS", "vi", "VI", "visible", "Visible", "rgb", "RGB")


@dataclass(frozen=True)
class ImagePair:
    stem: str
    ir: Path
    vis: Path


class Pairs(list):
    """A list of ``ImagePair`` that remembers the files left out because they have no partner
    (``unpaired``): commands report them (``unpaired_note``) instead of dropping them silently."""

    def __init__(self, pairs: Iterable[ImagePair] = (), unpaired: Iterable[Path] = ()) -> None:
        super().__init__(pairs)
        self.unpaired: list[Path] = list(unpaired)


def unpaired_note(pairs: Iterable[ImagePair] | dict[str, Iterable[ImagePair]], show: int = 3) -> str | None:
    """One line naming the files that were skipped for want of a partner, or None when there are none.
    Takes the result of ``resolve_pairs``/``pair_dataset``, or a ``find_datasets`` dict."""
    groups = pairs.values() if isinstance(pairs, dict) else [pairs]
    unpaired = [path for group in groups for path in getattr(group, "unpaired", [])]
    if not unpaired:
        return None
    names = ", ".join(f"{p.parent.name}/{p.name}" for p in unpaired[:show])
    more = f" and {len(unpaired) - show} more" if len(unpaired) > show else ""
    return (f"note: {len(unpaired)} file(s) have no partner with the same name in the other folder and are "
            f"skipped: {names}{more}")


def _images_by_stem(folder: Path) -> dict[str, Path]:
    images: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith("."):
            images.setdefault(path.stem, path)
    return images


def pair_folders(ir_dir: str | os.PathLike, vis_dir: str | os.PathLike) -> Pairs:
    """Pairs of two folders matched by file stem, sorted by stem. One-line errors when none match."""
    ir_dir, vis_dir = Path(ir_dir), Path(vis_dir)
    for folder in (ir_dir, vis_dir):
        if not folder.is_dir():
            raise SageEdgeError(f"{folder}: no such directory")
    ir_images, vis_images = _images_by_stem(ir_dir), _images_by_stem(vis_dir)
    for folder, images in ((ir_dir, ir_images), (vis_dir, vis_images)):
        if not images:
            raise SageEdgeError(f"{folder}: no images in directory")
    common = sorted(ir_images.keys() & vis_images.keys())
    if not common:
        raise SageEdgeError(f"{ir_dir} and {vis_dir}: no file stems in common, so no pairs")
    unpaired = [ir_images[s] for s in sorted(ir_images.keys() - vis_images.keys())]
    unpaired += [vis_images[s] for s in sorted(vis_images.keys() - ir_images.keys())]
    return Pairs((ImagePair(stem, ir_images[stem], vis_images[stem]) for stem in common), unpaired)


def find_pair_folders(dataset_dir: str | os.PathLike) -> tuple[Path, Path] | None:
    """(ir_dir, vis_dir) inside ``dataset_dir``, or None if it is not a dataset folder."""
    dataset_dir = Path(dataset_dir)
    ir = next((dataset_dir / n for n in IR_DIR_NAMES if (dataset_dir / n).is_dir()), None)
    vis = next((dataset_dir / n for n in VIS_DIR_NAMES if (dataset_dir / n).is_dir()), None)
    return (ir, vis) if ir is not None and vis is not None else None


def pair_dataset(dataset_dir: str | os.PathLike) -> Pairs:
    folders = find_pair_folders(dataset_dir)
    if folders is None:
        raise SageEdgeError(
            f"{dataset_dir}: expected an IR folder ({'/'.join(IR_DIR_NAMES[:2])}) "
            f"and a visible folder ({'/'.join(VIS_DIR_NAMES[:2])})"
        )
    return pair_folders(*folders)


def find_datasets(root: str | os.PathLike) -> dict[str, Pairs]:
    """``{dataset name: pairs}`` for a dataset folder, or for a root holding dataset sub-folders."""
    root = Path(root)
    if not root.is_dir():
        raise SageEdgeError(f"{root}: no such directory; give a folder holding ir/ and vis/ (or folders of them)")
    if find_pair_folders(root) is not None:
        return {root.name: pair_dataset(root)}
    datasets = {
        sub.name: pair_dataset(sub)
        for sub in sorted(root.iterdir())
        if sub.is_dir() and find_pair_folders(sub) is not None
    }
    if not datasets:
        raise SageEdgeError(f"{root}: no ir/+vis/ folders in it or in its sub-folders")
    return datasets


def resolve_pairs(ir: str | os.PathLike, vis: str | os.PathLike | None) -> Pairs:
    """What ``fuse IR VIS`` means: two files, two folders, or one dataset folder (VIS omitted)."""
    ir_path = Path(ir)
    if vis is None:
        if ir_path.is_dir():
            datasets = find_datasets(ir_path)
            if len(datasets) == 1:
                return next(iter(datasets.values()))
            # Stems can repeat across datasets: keep them apart as "<dataset>/<stem>".
            return Pairs(
                (ImagePair(f"{name}/{pair.stem}", pair.ir, pair.vis) for name, pairs in datasets.items()
                 for pair in pairs),
                [path for pairs in datasets.values() for path in getattr(pairs, "unpaired", [])],
            )
        raise SageEdgeError(f"{ir_path}: give a visible image too, or a dataset folder with ir/ and vis/")
    vis_path = Path(vis)
    if ir_path.is_dir() or vis_path.is_dir():
        if not (ir_path.is_dir() and vis_path.is_dir()):
            raise SageEdgeError(f"{ir_path} and {vis_path}: give two files or two directories, not one of each")
        return pair_folders(ir_path, vis_path)
    for path in (ir_path, vis_path):
        if not path.exists():
            raise SageEdgeError(f"{path}: no such file")
    return Pairs([ImagePair(ir_path.stem, ir_path, vis_path)])
