"""Fusion-quality evaluation: fuse datasets with models and classic baselines, score, report.

``evaluate`` fuses every IR/visible pair of a dataset (or of each dataset under a
root, as ``shared/data/ivif``) with each model (any backend, through ``Fuser``)
and, on request, with the classic mean and max rules, then computes the twelve
metrics of ``sage_edge.metrics``. ``write_report`` writes ``metrics.json``,
``metrics.csv``, ``report.md`` (best value per column in bold), a bar chart PNG
per metric group (matplotlib, imported lazily) and an image grid PNG
(IR | visible | each method, OpenCV only).

``score_folders`` is the ``sage-edge metrics`` side: IR, visible and fused files
(or folders matched by stem) scored without fusing anything.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from sage_edge import colour
from sage_edge import quality_gates
from sage_edge.atomic import atomic_path, write_bytes_atomic
from sage_edge.errors import SageEdgeError
from sage_edge.imageio import read_pair, read_visible, write_image
from sage_edge.metrics import (
    LOWER_IS_BETTER,
    mean_metrics,
    metrics_from_levels,
    parse_metric_names,
    to_gray_levels,
)
from sage_edge.pairs import _images_by_stem, find_datasets, resolve_pairs

BASELINES = ("mean", "max")
# Bar charts: one PNG per group.
METRIC_GROUPS: dict[str, tuple[str, ...]] = {
    "statistics": ("EN", "SD", "SF", "AG"),  # the fused image alone
    "information": ("MI", "SCD", "CC", "VIF"),  # what it carries over from the sources
    "structure": ("Qabf", "SSIM", "PSNR", "Nabf"),  # edges, structure, fidelity, artefacts
}
GRID_TILE_HEIGHT = 200
GRID_LABEL_HEIGHT = 24

FuseFn = Callable[[np.ndarray, np.ndarray], np.ndarray]


# --- baselines ---------------------------------------------------------------------------------


def baseline_fuse(rule: str, ir: np.ndarray, vis: np.ndarray) -> np.ndarray:
    """Classic pixel rules on luminance, coloured back exactly as ``Fuser`` does.

    "mean": Y_F = (IR + Y_vis) / 2; "max": Y_F = max(IR, Y_vis), on 0..255 levels, Y_vis from
    OpenCV's BGR2YCrCb. The visible Cr/Cb are kept and SAGE's inverse rebuilds BGR
    (``colour.bgr_image_from_fused_y``). A grey visible image gives a grey result.
    """
    if rule not in BASELINES:
        raise SageEdgeError(f"unknown baseline '{rule}'; choose from {', '.join(BASELINES)}")
    if ir.ndim != 2 or ir.dtype != np.uint8:
        raise SageEdgeError(f"IR must be H x W uint8, got {ir.shape} {ir.dtype}")
    if ir.shape[:2] != vis.shape[:2]:
        raise SageEdgeError(
            f"IR is {ir.shape[1]}x{ir.shape[0]} but visible is {vis.shape[1]}x{vis.shape[0]}"
        )
    ir_levels = ir.astype(np.float32)
    if vis.ndim == 2:
        y_levels = vis.astype(np.float32)
    else:
        y_levels, cr_levels, cb_levels = colour.ycrcb_from_bgr_image(vis)
    fused_levels = (ir_levels + y_levels) / 2 if rule == "mean" else np.maximum(ir_levels, y_levels)
    fused_y = colour.to_unit(fused_levels)
    if vis.ndim == 2:
        return colour.gray_image_from_fused_y(fused_y)
    return colour.bgr_image_from_fused_y(fused_y, cr_levels, cb_levels)


# --- results -----------------------------------------------------------------------------------


@dataclass
class MethodInfo:
    label: str
    kind: str  # "model" or "baseline"
    spec: str  # model spec as given, or the baseline rule
    path: str | None = None
    backend: str | None = None


@dataclass
class EvalResult:
    data: str
    metric_names: tuple[str, ...]
    methods: list[MethodInfo]
    # dataset -> method label -> stem -> {metric: value}
    scores: dict[str, dict[str, dict[str, dict[str, float]]]]
    options: dict[str, object] = field(default_factory=dict)
    # (dataset, stem, ir thumbnail, vis thumbnail, {method: fused thumbnail}) for the image grid
    samples: list[tuple[str, str, np.ndarray, np.ndarray, dict[str, np.ndarray]]] = field(default_factory=list)
    # quality gates (sage_edge.quality_gates): dataset -> stem -> source facts; dataset -> label -> stem -> facts
    sources: dict[str, dict[str, dict[str, object]]] = field(default_factory=dict)
    facts: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)
    reference: str | None = None  # the method the relative gates compare with

    @property
    def labels(self) -> list[str]:
        return [m.label for m in self.methods]

    def dataset_mean(self, dataset: str, label: str) -> dict[str, float]:
        return mean_metrics(self.scores[dataset][label].values())

    def overall_mean(self, label: str) -> dict[str, float]:
        """Mean over every pair of every dataset (pooled, not a mean of dataset means)."""
        return mean_metrics(row for ds in self.scores.values() for row in ds[label].values())

    def gates(self, label: str) -> dict[str, object]:
        """Every gate of ``label``: {"pairs": {"dataset/stem": [Gate, ...]}, "means": [Gate, ...]}.

        Gates 1-2 always; the per-pair gates 3 and 5 and the means gate 4 only against ``self.reference``
        (and not for the reference itself).
        """
        reference = self.reference if self.reference not in (None, label) else None
        pairs = {}
        for ds, by_method in self.facts.items():
            for stem, facts in by_method[label].items():
                ref = by_method[reference][stem] if reference else None
                pairs[f"{ds}/{stem}"] = quality_gates.judge_pair(facts, self.sources[ds][stem], ref)
        means = (quality_gates.judge_means(self.overall_mean(label), self.overall_mean(reference))
                 if reference else [])
        return {"pairs": pairs, "means": means}

    def pair_count(self, dataset: str | None = None) -> int:
        first = self.labels[0]
        if dataset is not None:
            return len(self.scores[dataset][first])
        return sum(len(ds[first]) for ds in self.scores.values())


def _label_for(spec: str, taken: set[str]) -> str:
    base = spec
    path = Path(spec)
    if path.suffix and (os.sep in spec or path.exists()):
        base = path.stem
    label, n = base, 2
    while label in taken:
        label, n = f"{base}#{n}", n + 1
    return label


def _thumbnail(image: np.ndarray, height: int = GRID_TILE_HEIGHT) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    h, w = image.shape[:2]
    width = max(1, round(w * height / h))
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)


def _grid_picks(datasets: dict[str, list], count: int) -> set[tuple[str, str]]:
    """Up to ``count`` pairs for the grid, round-robin over datasets (first pairs first)."""
    picks: list[tuple[str, str]] = []
    depth = 0
    while len(picks) < count:
        added = False
        for name, pairs in datasets.items():
            if depth < len(pairs) and len(picks) < count:
                picks.append((name, pairs[depth].stem))
                added = True
        if not added:
            break
        depth += 1
    return set(picks)


def evaluate(
    data: str | os.PathLike,
    models: Sequence[str] = (),
    backend: str = "auto",
    baselines: bool = False,
    limit: int | None = None,
    metrics: Sequence[str] | str | None = None,
    psnr_peak: str = "255",
    ssim_data_range: float = 2.0,
    grid_pairs: int = 4,
    progress: bool = True,
    reference: str | None = None,
    border_pad: int | None = None,
) -> EvalResult:
    """Fuse every pair under ``data`` with each model (and the baselines) and score it.

    ``data`` is a dataset folder (ir/ + vis/) or a root of dataset folders. ``limit`` keeps the
    first N pairs (by stem) of each dataset. Models are zoo names or files, opened with
    ``open_backend(resolve_model_for_backend(spec, backend), backend)``; all are resolved before any work starts.
    ``reference``: the model (as given in ``models``) that the relative quality gates compare with
    (``sage_edge.quality_gates``); gates 1-2 are judged for every method either way. ``border_pad``:
    given to every backend (None: each model's own).
    """
    from sage_edge.runtime.backend import open_backend
    from sage_edge.runtime.fuser import Fuser
    from sage_edge.zoo import resolve_model_for_backend

    names = parse_metric_names(metrics)
    if limit is not None and limit < 1:
        raise SageEdgeError(f"--limit must be at least 1, got {limit}")
    if not models and not baselines:
        raise SageEdgeError("nothing to evaluate: give --model and/or --baselines")
    datasets = find_datasets(data)
    if limit is not None:
        datasets = {name: pairs[:limit] for name, pairs in datasets.items()}

    if reference is not None and reference not in models:
        raise SageEdgeError(f"--reference {reference}: not one of the models given with --model "
                            f"({', '.join(models) or 'none'})")
    model_paths = [(spec, resolve_model_for_backend(spec, backend)) for spec in models]  # fail fast on unknown models
    methods: list[MethodInfo] = []
    fusers: list[FuseFn] = []
    engines = []
    taken: set[str] = set()
    reference_label: str | None = None
    try:
        for spec, path in model_paths:
            engine = open_backend(path, backend, border_pad=border_pad)
            engines.append(engine)
            label = _label_for(spec, taken)
            if spec == reference and reference_label is None:
                reference_label = label
            taken.add(label)
            methods.append(MethodInfo(label, "model", spec, str(path), engine.describe()))
            fusers.append(Fuser(engine).fuse)
        if baselines:
            for rule in BASELINES:
                label = _label_for(rule, taken)
                taken.add(label)
                methods.append(MethodInfo(label, "baseline", rule))
                fusers.append(lambda ir, vis, rule=rule: baseline_fuse(rule, ir, vis))

        picks = _grid_picks(datasets, grid_pairs)
        scores: dict[str, dict[str, dict[str, dict[str, float]]]] = {
            name: {m.label: {} for m in methods} for name in datasets
        }
        sources: dict[str, dict[str, dict[str, object]]] = {name: {} for name in datasets}
        facts: dict[str, dict[str, dict[str, dict[str, float]]]] = {
            name: {m.label: {} for m in methods} for name in datasets
        }
        samples = []
        total = sum(len(p) for p in datasets.values()) * len(methods)
        from tqdm import tqdm

        with tqdm(total=total, desc="eval", unit="fusion", disable=not progress) as bar:
            for dataset, pairs in datasets.items():
                for pair in pairs:
                    ir, vis = read_pair(pair.ir, pair.vis)
                    if ir.shape[:2] != vis.shape[:2]:
                        raise SageEdgeError(
                            f"{pair.ir} is {ir.shape[1]}x{ir.shape[0]} but {pair.vis} is "
                            f"{vis.shape[1]}x{vis.shape[0]}: register the pair first"
                        )
                    a, b = to_gray_levels(ir), to_gray_levels(vis)
                    sources[dataset][pair.stem] = quality_gates.source_facts(a, b)
                    thumbs: dict[str, np.ndarray] = {}
                    for method, fuse in zip(methods, fusers):
                        bar.set_postfix_str(f"{dataset}/{pair.stem} {method.label}", refresh=False)
                        try:
                            fused = fuse(ir, vis)
                        except SageEdgeError as exc:
                            raise SageEdgeError(f"{dataset}/{pair.stem} with {method.label}: {exc}") from None
                        fused_levels = to_gray_levels(fused)
                        scores[dataset][method.label][pair.stem] = metrics_from_levels(
                            a, b, fused_levels, names, psnr_peak, ssim_data_range
                        )
                        facts[dataset][method.label][pair.stem] = quality_gates.pair_facts(
                            fused_levels, sources[dataset][pair.stem], scores[dataset][method.label][pair.stem],
                            a, b)
                        if (dataset, pair.stem) in picks:
                            thumbs[method.label] = _thumbnail(fused)
                        bar.update(1)
                    if (dataset, pair.stem) in picks:
                        samples.append((dataset, pair.stem, _thumbnail(ir), _thumbnail(vis), thumbs))
    finally:
        for engine in engines:
            engine.close()
    options = {
        "backend": backend, "baselines": baselines, "limit": limit,
        "psnr_peak": str(psnr_peak), "ssim_data_range": float(ssim_data_range), "reference": reference_label,
        "border_pad": border_pad,
    }
    return EvalResult(str(data), names, methods, scores, options, samples, sources, facts, reference_label)


# --- report ------------------------------------------------------------------------------------


def _clean(obj: object) -> object:
    """nan/inf -> null, so the JSON is strict (RFC 8259)."""
    if isinstance(obj, dict):
        return {k: _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


def json_text(obj: object) -> str:
    return json.dumps(_clean(obj), indent=2, allow_nan=False)


def result_to_dict(result: EvalResult) -> dict:
    from sage_edge import __version__

    return {
        "sage_edge_version": __version__,
        "data": result.data,
        "options": result.options,
        "metrics": list(result.metric_names),
        "lower_is_better": [m for m in result.metric_names if m in LOWER_IS_BETTER],
        "methods": {
            m.label: {"kind": m.kind, "spec": m.spec, "path": m.path, "backend": m.backend} for m in result.methods
        },
        "datasets": {
            ds: {
                "pairs": result.pair_count(ds),
                "mean": {label: result.dataset_mean(ds, label) for label in result.labels},
                "images": result.scores[ds],
            }
            for ds in result.scores
        },
        "overall": {
            "pairs": result.pair_count(),
            "mean": {label: result.overall_mean(label) for label in result.labels},
        },
        "gates": gates_to_dict(result),
    }


def _target_dict(target: quality_gates.HotTarget | None) -> dict[str, object] | None:
    if target is None:
        return None
    x, y, w, h = target.box
    return {"box_xywh": [x, y, w, h], "area": target.area, "ir_contrast": target.ir_contrast}


def gates_to_dict(result: EvalResult) -> dict[str, object]:
    """The quality gates of every method, pair by pair, with what each gate compared."""
    methods = {}
    for label in result.labels:
        gates = result.gates(label)
        pairs = {}
        for key, pair_gates in gates["pairs"].items():
            ds, stem = key.split("/", 1)
            pairs[key] = {"passed": all(g.passed for g in pair_gates), **result.facts[ds][label][stem],
                          "gates": [g.to_dict() for g in pair_gates]}
        failed = sorted(k for k, v in pairs.items() if not v["passed"])
        means = [g.to_dict() for g in gates["means"]]
        methods[label] = {"passed": not failed and all(g["passed"] for g in means), "pairs_failed": failed,
                          "pairs": pairs, "means": means}
    sources = {f"{ds}/{stem}": {"sources_black": src["sources_black"], "darker_source_mean": src["darker_source_mean"],
                                "hot_target": _target_dict(src["target"])}
               for ds, by_stem in result.sources.items() for stem, src in by_stem.items()}
    return {"reference": result.reference, "definitions": "sage_edge/quality_gates.py", "sources": sources,
            "methods": methods}


def _csv_text(result: EvalResult) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["dataset", "method", "image", *result.metric_names, "gates", "gate_failures"])
    gates = {label: result.gates(label) for label in result.labels}

    def row(ds: str, label: str, image: str, values: dict[str, float], judged=None) -> None:
        verdict = "" if judged is None else ("pass" if not quality_gates.failures(judged) else "fail")
        why = "" if judged is None else "; ".join(f"{g.name}: {g.why}" for g in quality_gates.failures(judged))
        writer.writerow([ds, label, image, *(repr(float(values[m])) for m in result.metric_names), verdict, why])

    for ds, by_method in result.scores.items():
        for label in result.labels:
            for stem, values in by_method[label].items():
                row(ds, label, stem, values, gates[label]["pairs"].get(f"{ds}/{stem}"))
            row(ds, label, "mean", result.dataset_mean(ds, label))
    for label in result.labels:
        row("overall", label, "mean", result.overall_mean(label), gates[label]["means"] or None)
    return buffer.getvalue()


def format_value(value: float) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}"


def best_labels(table: dict[str, dict[str, float]], metric: str) -> set[str]:
    """Methods holding the best value of ``metric`` (ties all marked; nan ignored)."""
    values = {label: row[metric] for label, row in table.items() if not math.isnan(row[metric])}
    if not values:
        return set()
    best = min(values.values()) if metric in LOWER_IS_BETTER else max(values.values())
    return {label for label, v in values.items() if v == best}


def markdown_table(table: dict[str, dict[str, float]], metric_names: Sequence[str]) -> str:
    """Rows = methods, columns = metrics; the best value of each column in bold."""
    header = ["method", *(f"{m} ↓" if m in LOWER_IS_BETTER else m for m in metric_names)]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] + ["---:"] * len(metric_names)) + "|"]
    best = {m: best_labels(table, m) for m in metric_names}
    for label, row in table.items():
        cells = [label]
        for m in metric_names:
            text = format_value(row[m])
            cells.append(f"**{text}**" if label in best[m] and len(table) > 1 else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _report_md(result: EvalResult, charts: list[str], grid: str | None, chart_note: str | None) -> str:
    lines = ["# sage-edge eval", ""]
    lines.append(f"Data: `{result.data}`, {result.pair_count()} pairs in {len(result.scores)} dataset(s)"
                 + (f" (at most {result.options['limit']} per dataset)." if result.options.get("limit") else "."))
    lines.append("")
    lines.append("| method | kind | model / rule | backend |")
    lines.append("|---|---|---|---|")
    for m in result.methods:
        lines.append(f"| {m.label} | {m.kind} | `{m.path or m.spec}` | {m.backend or '-'} |")
    lines += [
        "",
        "Higher is better for every metric except those marked ↓ (Nabf). The best value of each column "
        "is in **bold**. Conventions: CDDFuse's `Evaluator` (see docs/metrics.md); "
        f"PSNR peak = {result.options.get('psnr_peak')}, SSIM data_range = {result.options.get('ssim_data_range'):g}.",
        "",
        f"## Overall ({result.pair_count()} pairs; mean over all pairs)",
        "",
        markdown_table({label: result.overall_mean(label) for label in result.labels}, result.metric_names),
        "",
    ]
    for ds in result.scores:
        lines += [
            f"## {ds} ({result.pair_count(ds)} pairs)",
            "",
            markdown_table({label: result.dataset_mean(ds, label) for label in result.labels}, result.metric_names),
            "",
        ]
    lines += _gates_md(result)
    if charts or chart_note:
        lines += ["## Charts", ""]
        lines += [f"![{Path(c).stem}]({c})" for c in charts]
        if chart_note:
            lines.append(chart_note)
        lines.append("")
    if grid:
        lines += ["## Images", "", "IR | visible | " + " | ".join(result.labels), "", f"![grid]({grid})", ""]
    return "\n".join(lines)


def _gates_md(result: EvalResult) -> list[str]:
    """Per method: how many pairs pass every gate, then each failing pair with why (worst first)."""
    reference = result.reference
    lines = ["## Quality gates", "",
             "Judged pair by pair (`sage_edge/quality_gates.py`, docs/metrics.md): no crushed shadows, not darker "
             "than both sources" + (f"; against `{reference}`: EN >= 0.9x and VIF >= 0.8x per pair, hot-target "
                                    "contrast >= 0.9x, means of EN SD SF AG SCD VIF Qabf >= 0.9x." if reference else
                                    ". Give `--reference MODEL` for the gates relative to a reference model."), ""]
    lines += ["| method | pairs passing | failing pairs | means |", "|---|---:|---|---|"]
    details = []
    for label in result.labels:
        gates = result.gates(label)
        failing = {key: quality_gates.failures(g) for key, g in gates["pairs"].items() if quality_gates.failures(g)}
        mean_failures = quality_gates.failures(gates["means"])
        means = "-" if not gates["means"] else ("pass" if not mean_failures else
                                                 "fail: " + ", ".join(g.name for g in mean_failures))
        shown = ", ".join(sorted(failing)[:6]) + (" ..." if len(failing) > 6 else "")
        lines.append(f"| {label} | {len(gates['pairs']) - len(failing)} / {len(gates['pairs'])} | {shown or '-'} | "
                     f"{means} |")
        for key, failed in sorted(failing.items(), key=lambda item: (-len(item[1]), item[0])):
            details.append(f"| {label} | {key} | " + "<br>".join(f"{g.name}: {g.why}" for g in failed) + " |")
        for g in mean_failures:
            details.append(f"| {label} | (all pairs) | {g.name}: {g.why} |")
    if details:
        lines += ["", "| method | pair | failed gates |", "|---|---|---|", *details]
    lines.append("")
    return lines


def _label_strip(text: str, width: int) -> np.ndarray:
    strip = np.full((GRID_LABEL_HEIGHT, width, 3), 255, np.uint8)
    scale = 0.5
    (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    while tw > width - 6 and len(text) > 4:
        text = text[:-1]
        (tw, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    cv2.putText(strip, text, (3, GRID_LABEL_HEIGHT - 8), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def labelled_grid(rows: list[list[tuple[str, np.ndarray]]]) -> np.ndarray:
    """Rows of (label, BGR tile) as one image: each tile under its label, 4-pixel white gaps (OpenCV only)."""
    images = []
    for tiles in rows:
        columns = [np.vstack([_label_strip(text, tile.shape[1]), tile]) for text, tile in tiles]
        gap = np.full((columns[0].shape[0], 4, 3), 255, np.uint8)
        row = columns[0]
        for column in columns[1:]:
            row = np.hstack([row, gap, column])
        images.append(row)
    width = max(r.shape[1] for r in images)
    padded = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in images]
    return np.vstack(padded)


def grid_image(result: EvalResult) -> np.ndarray | None:
    """IR | visible | each method, one row per sampled pair, with labels (OpenCV only)."""
    if not result.samples:
        return None
    rows = []
    for dataset, stem, ir, vis, fused in result.samples:
        tiles = [("IR " + f"{dataset}/{stem}", ir), ("visible", vis)]
        tiles += [(label, fused[label]) for label in result.labels if label in fused]
        rows.append(tiles)
    return labelled_grid(rows)


def _bar_charts(result: EvalResult, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = {
        name: [m for m in members if m in result.metric_names] for name, members in METRIC_GROUPS.items()
    }
    written = []
    columns = [*result.scores, "overall"]
    for group, members in groups.items():
        if not members:
            continue
        fig, axes = plt.subplots(1, len(members), figsize=(4.2 * len(members), 3.6), squeeze=False)
        n = len(result.labels)
        width = 0.8 / n
        x = np.arange(len(columns))
        for ax, metric in zip(axes[0], members):
            for i, label in enumerate(result.labels):
                values = [result.dataset_mean(ds, label)[metric] for ds in result.scores]
                values.append(result.overall_mean(label)[metric])
                values = [v if math.isfinite(v) else 0.0 for v in values]
                ax.bar(x + (i - (n - 1) / 2) * width, values, width, label=label)
            ax.set_title(f"{metric} ({'lower' if metric in LOWER_IS_BETTER else 'higher'} is better)", fontsize=10)
            ax.set_xticks(x)
            ax.set_xticklabels(columns, rotation=30, ha="right", fontsize=8)
            ax.grid(axis="y", alpha=0.3)
        handles, labels = axes[0][0].get_legend_handles_labels()
        fig.legend(handles, labels, loc="upper right", ncol=min(n, 6), fontsize=8, frameon=False)
        fig.suptitle(f"sage-edge eval: {group}", x=0.02, ha="left")
        fig.tight_layout(rect=(0, 0, 1, 0.92))
        name = f"chart_{group}.png"
        with atomic_path(out / name) as tmp:
            fig.savefig(tmp, format="png", dpi=100)
        plt.close(fig)
        written.append(name)
    return written


def write_report(result: EvalResult, out: str | os.PathLike, charts: bool = True) -> list[Path]:
    """Write metrics.json, metrics.csv, report.md, chart_<group>.png and grid.png into ``out``."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SageEdgeError(f"{out}: is a file; give a directory for the report")
    written: list[str] = []
    chart_names: list[str] = []
    chart_note = None
    grid = grid_image(result)
    # Make every picture first: a failure leaves no half report behind.
    if charts:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            chart_note = "(bar charts skipped: matplotlib is not installed; pip install 'sage-edge[plot]')"
        else:
            chart_names = _bar_charts(result, out)
    if grid is not None:
        write_image(out / "grid.png", grid)
        written.append("grid.png")
    write_bytes_atomic(out / "metrics.json", (json_text(result_to_dict(result)) + "\n").encode())
    write_bytes_atomic(out / "metrics.csv", _csv_text(result).encode())
    md = _report_md(result, chart_names, "grid.png" if grid is not None else None, chart_note)
    write_bytes_atomic(out / "report.md", md.encode())
    return [out / n for n in ["metrics.json", "metrics.csv", "report.md", *chart_names, *written]]


# --- sage-edge metrics: score existing fused images -------------------------------------------


@dataclass(frozen=True)
class Triple:
    stem: str
    ir: Path
    vis: Path
    fused: Path


def find_triples(ir: str | os.PathLike, vis: str | os.PathLike, fused: str | os.PathLike) -> list[Triple]:
    """IR / visible / fused: three files, or three folders matched by stem (every stem must match)."""
    ir, vis, fused = Path(ir), Path(vis), Path(fused)
    pairs = resolve_pairs(ir, vis)
    if not fused.exists():
        raise SageEdgeError(f"{fused}: no such file or directory")
    if not ir.is_dir():
        if fused.is_dir():
            raise SageEdgeError(f"{fused}: is a directory, but IR and VIS are files; give a fused image file")
        return [Triple(pairs[0].stem, pairs[0].ir, pairs[0].vis, fused)]
    if not fused.is_dir():
        raise SageEdgeError(f"{fused}: is a file, but IR and VIS are directories; give the fused directory")
    fused_by_stem = _images_by_stem(fused)
    if not fused_by_stem:
        raise SageEdgeError(f"{fused}: no images in directory")
    pair_stems = {p.stem for p in pairs}
    missing = [p.stem for p in pairs if p.stem not in fused_by_stem]
    if missing:
        raise SageEdgeError(
            f"{fused}: no fused image for {len(missing)} of {len(pairs)} pairs (first: '{missing[0]}')"
        )
    extra = sorted(set(fused_by_stem) - pair_stems)
    if extra:
        raise SageEdgeError(
            f"{fused}: {len(extra)} fused image(s) have no IR/visible pair in {ir} and {vis} (first: '{extra[0]}')"
        )
    return [Triple(p.stem, p.ir, p.vis, fused_by_stem[p.stem]) for p in pairs]


def score_triples(
    triples: Iterable[Triple],
    metrics: Sequence[str] | str | None = None,
    psnr_peak: str = "255",
    ssim_data_range: float = 2.0,
    progress: bool = False,
) -> dict[str, dict[str, float]]:
    """``{stem: {metric: value}}`` for each triple; one-line errors for bad or mismatched images."""
    from tqdm import tqdm

    names = parse_metric_names(metrics)
    triples = list(triples)
    out: dict[str, dict[str, float]] = {}
    for t in tqdm(triples, desc="metrics", unit="image", disable=not progress or len(triples) < 2):
        (ir, vis), fused = read_pair(t.ir, t.vis), read_visible(t.fused)
        sizes = [x.shape[:2] for x in (ir, vis, fused)]
        if len(set(sizes)) != 1:
            (ha, wa), (hb, wb), (hf, wf) = sizes
            raise SageEdgeError(
                f"{t.stem}: sizes differ: IR {wa}x{ha} ({t.ir.name}), visible {wb}x{hb} ({t.vis.name}), "
                f"fused {wf}x{hf} ({t.fused.name})"
            )
        out[t.stem] = metrics_from_levels(
            to_gray_levels(ir), to_gray_levels(vis), to_gray_levels(fused), names, psnr_peak, ssim_data_range
        )
    return out


def text_table(rows: dict[str, dict[str, float]], metric_names: Sequence[str], first: str = "image") -> str:
    """A fixed-width table: one row per key, one column per metric."""
    width0 = max([len(first), *(len(k) for k in rows)])
    widths = [max(len(m) + (2 if m in LOWER_IS_BETTER else 0), 9) for m in metric_names]
    head = [first.ljust(width0)] + [
        (f"{m} ↓" if m in LOWER_IS_BETTER else m).rjust(w) for m, w in zip(metric_names, widths)
    ]
    lines = ["  ".join(head)]
    for key, row in rows.items():
        lines.append("  ".join([key.ljust(width0)] + [format_value(row[m]).rjust(w) for m, w in zip(metric_names, widths)]))
    return "\n".join(lines)
