"""``napari-dip decoder IN -o OUT``: fit Deep Decoders (patch grids, ensembles) to one image."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from .common import add_shared_options, progress_bar, write_report
from .tiling import add_tiling_options, show_plans

NAMING = """\
defaults here: --iterations 2000, --lr 0.01, --stop fixed (no early stopping); --preset does
not apply to the decoder.

outputs, written beside OUT (STEM = OUT's name without its extension, EXT = its extension):
  OUT                      the stitched fit (the mean of the members for --ensemble N > 1)
  STEM_member{m}EXT        member m = 0..N-1 (only with --ensemble N > 1)
  STEM_stdEXT              per-pixel standard deviation across members, the spread map
                           (only with --ensemble N > 1)
  STEM_patch_r{r}c{c}EXT   the fit of patch row r, column c, counted from 0 (only with
                           --patches other than 1x1; not for overlapping tiles)
An image too large for --max-memory (default: a safe share of the free memory), or any with
--tile-size, is fitted as overlapping tiles blended back without seams (--patches 1x1).
The report (--report, JSON) holds PSNR/SSIM/MS-SSIM/VIF per member, of the mean and per
patch, the CV of PSNR across members (unstable above 5%), or, without a reference, the mean
pairwise PSNR between members. For --task fit the input itself is the reference."""


def register(sub) -> None:
    p = sub.add_parser("decoder", help="Deep Decoder: fit, denoise or super-resolve one image",
                       description="Fit Deep Decoders (1x1 convolutions, upsampling, ReLU, normalisation) "
                                   "to one 2D image, or one slice of a volume (--slice). Patch grids and "
                                   "ensembles are fitted as one batch.",
                       epilog=NAMING, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", metavar="IN", help="image: .tif/.tiff, .png/.jpg, .npy, .nii/.nii.gz")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output file (format from its name)")
    add_decoder_options(p)
    p.add_argument("--slice", help="for a volume: the slice index along --axis, or 'middle'")
    p.add_argument("--axis", default="0", help="for a volume: the slicing axis, an index or "
                                               "axial/coronal/sagittal (NIfTI); default 0")
    add_shared_options(p)
    p.set_defaults(func=run_decoder, stop="fixed")


def add_decoder_options(p: argparse.ArgumentParser) -> None:
    """The network, code, grid and task options (single values)."""
    p.add_argument("--task", default="fit", choices=("fit", "denoise", "superres", "inpaint"),
                   help="fit (represent the image; default), denoise, superres (--factor), inpaint (--mask)")
    p.add_argument("--channels", default="64", help="channels k per block: one integer, or one per block "
                                                    "separated by '+' (e.g. 128+64+64+32); default 64")
    p.add_argument("--blocks", type=int, default=6, help="number of blocks l (default 6)")
    p.add_argument("--scale", type=int, default=16, help="input scale s: the code is H/s x W/s (default 16)")
    p.add_argument("--upsample", default="bilinear", choices=("bilinear", "nearest"))
    p.add_argument("--code", default="blurred", choices=("uniform", "blurred", "perlin"),
                   help="uniform in [0, 1], blurred (3x3 Gaussian, sigma 0.8; default), perlin")
    p.add_argument("--code-3d", action="store_true", help="channels interpolated between two noise "
                                                          "images (perlin: slices of a 3D volume)")
    p.add_argument("--feature-size", type=float, default=4.0, help="Perlin feature size in code pixels (default 4)")
    p.add_argument("--patches", default="1x1", metavar="RxC", help="fit an R x C grid of patches in one batch")
    p.add_argument("--ensemble", type=int, default=1, metavar="N", help="fit N independent decoders at once")
    p.add_argument("--factor", type=int, default=2, help="super-resolution factor (default 2)")
    p.add_argument("--mask", help="inpainting mask image: non-zero = known pixel, 0 = to fill")
    add_tiling_options(p)


def parse_channels(text: str) -> int | tuple[int, ...]:
    parts = [s for s in str(text).split("+") if s.strip()]
    try:
        values = tuple(int(s) for s in parts)
    except ValueError:
        raise ValueError(f"--channels must be an integer or integers joined by '+', got {text!r}") from None
    if not values:
        raise ValueError("--channels needs a value")
    return values[0] if len(values) == 1 else values


def read_input(path: str, axis: str, slice_arg: str | None):
    """Read IN; for a volume pick one slice. Returns (image, metadata, in-plane spacing or None)."""
    from ..arrays import parse_slices
    from ..io import plane_axis, read_image
    image, meta = read_image(path)
    spatial = image.ndim - (meta.channel_axis is not None)
    if spatial <= 2:
        return image, meta, meta.spacing
    if slice_arg is None:
        raise ValueError(f"{Path(path).name} is a volume of shape {image.shape}; pick one slice with "
                         "--slice INDEX (or --slice middle) and --axis")
    ax = plane_axis(meta, axis) % image.ndim
    chosen = parse_slices(slice_arg, image.shape[ax], name="--slice")
    if len(chosen) != 1:
        raise ValueError(f"--slice {slice_arg!r} selects {len(chosen)} slices; the decoder fits one (an index or middle)")
    index = chosen[0]
    spacing = None if not meta.spacing else tuple(s for i, s in enumerate(meta.spacing) if i != ax)[-2:]
    return np.take(image, index, axis=ax), None, spacing


def run_decoder(args: argparse.Namespace) -> int:
    from ..decoder import fit_decoder
    from ..io import extension, read_image, write_image

    if args.preset:
        raise ValueError("--preset does not apply to the decoder; set --channels, --blocks, --scale, --iterations")
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise ValueError("the output path is the input path; choose another output so the input is kept")
    image, meta, spacing = read_input(args.input, args.axis, args.slice)
    channel_axis = args.channel_axis if args.channel_axis is not None else (meta.channel_axis if meta else None)
    truth = read_image(args.ground_truth)[0] if args.ground_truth else None
    mask = None
    if args.task == "inpaint":
        if not args.mask:
            raise ValueError("--task inpaint needs --mask")
        m, m_meta = read_image(args.mask)
        mask = (m[..., 0] if m_meta.channel_axis is not None else m) > 0
    show_plans(args)
    bar = progress_bar(args.iterations or 2000, args.quiet, f"decoder {Path(args.input).name}")
    try:
        result = fit_decoder(image, task=args.task, channels=parse_channels(args.channels), blocks=args.blocks,
                             scale=args.scale, upsample=args.upsample, code=args.code, code_3d=args.code_3d,
                             feature_size=args.feature_size, patches=args.patches, ensemble=args.ensemble,
                             factor=args.factor, mask=mask, iterations=args.iterations or 2000,
                             lr=args.lr or 0.01, stop=args.stop, seed=args.seed, ground_truth=truth,
                             channel_axis=channel_axis, device=args.device, precision=args.precision,
                             tile_size=args.tile_size, max_memory=args.max_memory,
                             callback=lambda event: _advance(bar, event))
    finally:
        bar.close()
    out = Path(args.output)
    ext = extension(out)
    stem = out.name[: len(out.name) - len(ext)]
    factor = result.report["factor"]
    out_spacing = None if not spacing else tuple(spacing[:-2]) + tuple(s / factor for s in spacing[-2:])
    written = {"output": write_image(out, result.output, meta, spacing=out_spacing)}
    if args.ensemble > 1:
        for m, member in enumerate(result.members):
            written[f"member{m}"] = write_image(out.with_name(f"{stem}_member{m}{ext}"), member, meta,
                                                spacing=out_spacing)
        written["std"] = write_image(out.with_name(f"{stem}_std{ext}"), result.std, meta, spacing=out_spacing)
    rows, cols = (int(v) for v in result.report["patches"].split("x"))
    if rows * cols > 1 and not result.report["tiled"]:
        for i, patch in enumerate(result.patches):
            r, c = divmod(i, cols)
            written[f"patch_r{r}c{c}"] = write_image(out.with_name(f"{stem}_patch_r{r}c{c}{ext}"), patch, meta,
                                                     spacing=out_spacing)
    report = {**result.report, "input": str(Path(args.input).resolve()),
              "outputs": {k: str(v.resolve()) for k, v in written.items()}}
    write_report(args.report, report)
    print_summary(report)
    return 0


def _advance(bar, event) -> None:
    """One iteration on the bar; a run in several batches of tiles counts all their iterations
    and shows which tiles it is at and the time left."""
    from ..api import SliceProgress
    from .common import tile_status
    if not isinstance(event, SliceProgress):
        return
    if event.tiles:
        batches = -(-event.count // len(event.slices))
        if bar.total != event.progress.total * batches:
            bar.total = event.progress.total * batches
        bar.set_postfix_str(tile_status(event), refresh=False)
    bar.update(1)


def _fmt(entry: dict) -> str:
    parts = [f"PSNR {entry['psnr']:.2f} dB"] if "psnr" in entry else []
    for key, name in (("ssim", "SSIM"), ("ms_ssim", "MS-SSIM"), ("vif", "VIF")):
        if entry.get(key) is not None:
            parts.append(f"{name} {entry[key]:.4f}")
    return ", ".join(parts)


def print_summary(report: dict) -> None:
    print(f"decoder {report['task']}: {report['parameters']:,} parameters "
          f"({report['params_per_pixel']:.3f} per pixel), {report['iterations']} iterations in "
          f"{report['seconds']:.1f} s ({report['seconds_per_iteration']:.3f} s/iteration), "
          f"{report['ensemble']} member(s), patches {report['patches']}")
    for m in report["members"]:
        if "psnr" in m:
            print(f"  member {m['member']} (seed {m['seed']}): {_fmt(m)}")
    if "mean" in report:
        print(f"  mean: {_fmt(report['mean'])}")
        notes = report["mean"].get("notes")
        if notes:
            print("  note: " + "; ".join(notes))
    if "cv_percent" in report:
        flag = "UNSTABLE (> 5%)" if report["unstable"] else "stable (<= 5%)"
        print(f"  CV of PSNR across members: {report['cv_percent']:.2f}% - {flag}")
    if "mean_pairwise_psnr" in report:
        print(f"  mean pairwise PSNR between members: {report['mean_pairwise_psnr']:.2f} dB; "
              f"mean spread {report['spread']:.4g}")
    for p in report.get("patch_metrics", []):
        if "psnr" in p:
            print(f"  patch r{p['row']}c{p['col']}: {_fmt(p)}")
    for name, path in report["outputs"].items():
        print(f"wrote {name}: {path}")
