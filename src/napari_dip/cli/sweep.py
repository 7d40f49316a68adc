"""``napari-dip sweep IN --csv RUNS.csv``: a grid of Deep Decoder settings, one CSV row per run."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
Every setting takes a comma-separated list; the sweep runs every combination on every
selected slice and appends one row per run to the CSV (settings, slice, PSNR/SSIM/MS-SSIM/VIF
of the result, member PSNR mean/min/max, CV%, unstable flag, mean pairwise PSNR, parameters,
parameters per pixel, seconds; or the reason a combination was refused, in "error"). Rerunning the same command skips the rows already in the CSV,
so an interrupted sweep resumes.

The MRI report's grid (k in 8..192, s in 2^3..2^5, l in 4..6, 2000/5000/7000 iterations, for
every code and patch grid) on the axial middle slice:
  napari-dip sweep ../shared/data/mri/niimath_T1.nii.gz --csv report_grid.csv \\
      --axis axial --slices middle --grid report
which is the same as giving
  --channels 8,16,32,64,96,128,192 --scale 8,16,32 --blocks 4,5,6 \\
  --iterations 2000,5000,7000 --code uniform,blurred,perlin --patches 1x1,2x2,3x3,4x5
(options given explicitly replace the grid's list for that setting)."""

#: option -> (setting, parser of one value)
OPTIONS = {
    "task": ("task", str), "channels": ("channels", None), "blocks": ("blocks", int),
    "scale": ("scale", int), "upsample": ("upsample", str), "code": ("code", str),
    "code-3d": ("code_3d", None), "feature-size": ("feature_size", float), "patches": ("patches", str),
    "ensemble": ("ensemble", int), "factor": ("factor", int), "iterations": ("iterations", int),
    "lr": ("lr", float), "seed": ("seed", int),
}


def register(sub) -> None:
    p = sub.add_parser("sweep", help="Deep Decoder over a grid of settings: one CSV row per run, resumable",
                       description="Run the Deep Decoder for every combination of the given settings "
                                   "over an image or the slices of a stack.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="image or volume: .tif/.tiff, .png/.jpg, .npy, .nii/.nii.gz")
    p.add_argument("--csv", required=True, metavar="RUNS.csv", help="the CSV to append to (resumed if it exists)")
    p.add_argument("--grid", choices=("report",), help="start from the MRI report's grid (see below)")
    for opt, (name, _) in OPTIONS.items():
        p.add_argument(f"--{opt}", metavar="V1,V2,...", help=f"{name} value(s), comma-separated")
    p.add_argument("--axis", default="0", help="for a volume: slicing axis, an index or axial/coronal/sagittal")
    p.add_argument("--slices", default=None,
                   help="for a volume: slice indices (e.g. 90,93), a range A:B, or 'middle'; default all")
    p.add_argument("--ground-truth", metavar="GT", help="reference image (same shape as IN); "
                                                        "task fit uses IN itself")
    p.add_argument("--mask", help="inpainting mask (Y, X): non-zero = known")
    p.add_argument("--device", default="auto")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"))
    p.add_argument("--channel-axis", type=int)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=run_sweep_cli)


def _values(name: str, text: str, parse) -> list:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"--{name} needs at least one value")
    if name == "channels":
        from .decoder import parse_channels
        return [parse_channels(t) for t in items]
    if name == "code-3d":
        table = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}
        if any(t.lower() not in table for t in items):
            raise ValueError(f"--code-3d takes yes/no (or true/false), got {text!r}")
        return [table[t.lower()] for t in items]
    try:
        return [parse(t) for t in items]
    except ValueError:
        raise ValueError(f"--{name} has a value that is not a {parse.__name__}: {text!r}") from None


def grid_from_args(args: argparse.Namespace) -> dict:
    from ..batch.sweep import REPORT_GRID
    grid = dict(REPORT_GRID) if args.grid == "report" else {}
    for opt, (name, parse) in OPTIONS.items():
        text = getattr(args, name)
        if text is not None:
            grid[name] = _values(opt, text, parse)
    return grid


def select_slices(image, meta, axis: str, spec: str | None, channel_axis: int | None) -> dict:
    """{index: 2D image} for the slices to run (the image itself, as slice 0, when 2D)."""
    import numpy as np

    from ..arrays import parse_slices
    from ..io import plane_axis
    spatial = image.ndim - (channel_axis is not None)
    if spatial <= 2:
        return {0: image}
    if spatial > 3:
        raise ValueError(f"sweep takes 2D images or 3D volumes, got shape {image.shape}")
    ax = plane_axis(meta, axis) % image.ndim
    indices = parse_slices(spec, image.shape[ax], name="--slices")
    return {i: np.take(image, i, axis=ax) for i in indices}


def run_sweep_cli(args: argparse.Namespace) -> int:
    from ..io import read_image
    from ..batch.sweep import expand, run_sweep

    image, meta = read_image(args.input)
    channel_axis = args.channel_axis if args.channel_axis is not None else meta.channel_axis
    slices = select_slices(image, meta, args.axis, args.slices, channel_axis)
    truth = None
    if args.ground_truth:
        gt = read_image(args.ground_truth)[0]
        if gt.shape != image.shape:
            raise ValueError(f"--ground-truth has shape {gt.shape}, the input {image.shape}")
        truth = select_slices(gt, meta, args.axis, args.slices, channel_axis)
    mask = None
    if args.mask:
        m, m_meta = read_image(args.mask)
        mask = (m[..., 0] if m_meta.channel_axis is not None else m) > 0
    grid = grid_from_args(args)
    total = len(expand(grid)) * len(slices)
    counts = {"run": 0, "skip": 0}

    def on_run(position: int, n: int, settings: dict, status: str) -> None:
        counts[status] += 1
        if not args.quiet and status == "run":
            varied = ", ".join(f"{k}={settings[k]}" for k in grid)
            print(f"run {position + 1}/{n}: {varied}", file=sys.stderr, flush=True)

    for row in run_sweep(slices, grid, args.csv, ground_truth=truth, mask=mask, channel_axis=channel_axis,
                         device=args.device, precision=args.precision, on_run=on_run):
        if not args.quiet and row["error"]:
            print(f"  slice {row['slice']}: refused: {row['error']}", file=sys.stderr, flush=True)
        elif not args.quiet:
            figures = [f"{name} {float(row[key]):.{digits}f}{unit}" for key, name, digits, unit in
                       (("psnr", "PSNR", 2, " dB"), ("cv_percent", "CV", 2, "%"),
                        ("mean_pairwise_psnr", "pairwise PSNR", 2, " dB"), ("seconds", "fit", 1, " s"))
                       if row[key] != ""]
            print(f"  slice {row['slice']}: " + ", ".join(figures), file=sys.stderr, flush=True)
    print(f"sweep: {total} run(s), {counts['run']} done now, {counts['skip']} already in "
          f"{Path(args.csv).resolve()}")
    return 0
