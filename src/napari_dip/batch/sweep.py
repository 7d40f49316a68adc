"""A grid of Deep Decoder settings over an image or a stack: one CSV row per run, resumable.

A run is one combination of the grid's settings on one slice. Its row holds the settings,
the slice, the metrics, the seconds and the CV; a run whose settings and slice are already in
the CSV is skipped, so an interrupted sweep picks up where it stopped. A combination the
decoder refuses (e.g. a patch grid too fine for the scale) gets a row with the reason in
``error`` and no metrics.
"""
from __future__ import annotations

import csv
import itertools
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..decoder import fit_decoder

#: Settings a grid may vary (the keyword arguments of :func:`napari_dip.decoder.fit_decoder`).
SETTINGS = ("task", "channels", "blocks", "scale", "upsample", "code", "code_3d", "feature_size",
            "patches", "ensemble", "factor", "iterations", "lr", "seed")
RESULTS = ("psnr", "ssim", "ms_ssim", "vif", "psnr_mean", "psnr_min", "psnr_max", "cv_percent",
           "unstable", "mean_pairwise_psnr", "spread", "parameters", "params_per_pixel", "seconds",
           "seconds_per_iteration", "error")
COLUMNS = ("slice",) + SETTINGS + RESULTS

#: The MRI report's grid: run it for every code and patch grid.
REPORT_GRID = {
    "channels": [8, 16, 32, 64, 96, 128, 192],
    "scale": [8, 16, 32],
    "blocks": [4, 5, 6],
    "iterations": [2000, 5000, 7000],
    "code": ["uniform", "blurred", "perlin"],
    "patches": ["1x1", "2x2", "3x3", "4x5"],
}
DEFAULTS = {"task": "fit", "channels": 64, "blocks": 6, "scale": 16, "upsample": "bilinear",
            "code": "blurred", "code_3d": False, "feature_size": 4.0, "patches": "1x1", "ensemble": 1,
            "factor": 2, "iterations": 2000, "lr": 0.01, "seed": 0}


def expand(grid: dict[str, Sequence]) -> list[dict]:
    """Every combination of the grid (unlisted settings take their defaults), in grid order."""
    unknown = set(grid) - set(SETTINGS)
    if unknown:
        raise ValueError(f"unknown sweep setting(s) {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(SETTINGS)}")
    keys = list(grid)
    values = [list(grid[k]) for k in keys]
    if any(not v for v in values):
        raise ValueError("every sweep setting needs at least one value")
    return [{**DEFAULTS, **dict(zip(keys, combo))} for combo in itertools.product(*values)]


def _key(row: dict) -> tuple:
    return tuple(str(row[k]) for k in ("slice",) + SETTINGS)


def done_keys(csv_path: str | Path) -> set[tuple]:
    """The (slice, settings) keys of the runs already in the CSV."""
    p = Path(csv_path)
    if not p.is_file() or p.stat().st_size == 0:
        return set()
    with open(p, newline="") as fh:
        reader = csv.DictReader(fh)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise ValueError(f"{p} has other columns than a sweep writes; use a new CSV file")
        return {_key(r) for r in reader}


def _row(slice_index: int, settings: dict, report: dict) -> dict:
    row = {"slice": slice_index, **settings}
    best = report.get("mean") or {}
    for k in ("psnr", "ssim", "ms_ssim", "vif"):
        row[k] = best.get(k)
    psnrs = [m["psnr"] for m in report["members"] if "psnr" in m]
    if psnrs:
        row.update(psnr_mean=float(np.mean(psnrs)), psnr_min=min(psnrs), psnr_max=max(psnrs))
    for k in ("cv_percent", "unstable", "mean_pairwise_psnr", "spread", "parameters", "params_per_pixel",
              "seconds", "seconds_per_iteration"):
        row[k] = report.get(k)
    return {k: ("" if row.get(k) is None else row[k]) for k in COLUMNS}


def run_sweep(slices: dict[int, np.ndarray], grid: dict[str, Sequence], csv_path: str | Path, *,
              ground_truth: dict[int, np.ndarray] | None = None, mask=None, channel_axis: int | None = None,
              device: str = "auto", precision: str | None = None,
              on_run: Callable[[int, int, dict, str], None] | None = None) -> Iterator[dict]:
    """Run every combination of ``grid`` on every slice; append one CSV row per run; yield rows.

    ``slices`` maps a slice index to a 2D image (plus ``channel_axis``). Runs already in the
    CSV are skipped. ``on_run(position, total, settings, status)`` is called before each run
    with status 'run' or 'skip'. Metrics of the ensemble mean are the ``psnr``... columns;
    ``psnr_mean``/``min``/``max`` summarise the members.
    """
    runs = [(i, s) for i in slices for s in expand(grid)]
    done = done_keys(csv_path)
    p = Path(csv_path)
    p.parent.mkdir(parents=True, exist_ok=True)
    new = not p.is_file() or p.stat().st_size == 0
    for position, (index, settings) in enumerate(runs):
        if _key({"slice": index, **settings}) in done:
            if on_run:
                on_run(position, len(runs), settings, "skip")
            continue
        if on_run:
            on_run(position, len(runs), settings, "run")
        gt = None if ground_truth is None else ground_truth[index]
        try:
            result = fit_decoder(slices[index], **settings, ground_truth=gt, mask=mask,
                                 channel_axis=channel_axis, device=device, precision=precision)
        except ValueError as err:
            row = {k: "" for k in COLUMNS} | {"slice": index, **settings, "error": str(err)}
        else:
            row = _row(index, settings, result.report)
        with open(p, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=COLUMNS)
            if new:
                writer.writeheader()
                new = False
            writer.writerow(row)
        done.add(_key(row))
        yield row
