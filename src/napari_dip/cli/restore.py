"""``napari-dip denoise|superres|inpaint|demo``: Deep Image Prior from a file to a file."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..io import ImageMeta, read_image, write_image
from .common import add_shared_options, progress_bar, write_report


def register(sub) -> None:
    for name, helptext in (("denoise", "remove noise (A = identity)"),
                           ("superres", "super-resolve by an integer factor (Lanczos2 downsampling model)"),
                           ("inpaint", "fill the pixels where the mask is 0")):
        p = sub.add_parser(name, help=helptext, description=f"Deep Image Prior: {helptext}. "
                           "3D TIFF/NPY stacks are processed slice by slice along the first axis.")
        p.add_argument("input", metavar="IN", help="image: .tif/.tiff, .png/.jpg, .npy")
        p.add_argument("-o", "--output", metavar="OUT", required=True, help="output file (format from its name)")
        if name == "superres":
            p.add_argument("--factor", type=int, required=True, help="upsampling factor, 2..32")
        if name == "inpaint":
            p.add_argument("--mask", required=True, help="mask image: non-zero = known pixel, 0 = to fill")
        add_shared_options(p)
        p.set_defaults(func=run_task, task=name)
    d = sub.add_parser("demo", help="denoise a bundled sample (F16 crop, noise sigma 25/255); works offline",
                       description="Adds Gaussian noise (sigma 25/255) to a bundled 128x128 crop of the "
                                   "F16 image, denoises it and prints PSNR before and after.")
    d.add_argument("-o", "--output", default="napari-dip-demo", help="folder for the results")
    d.add_argument("--iterations", type=int, default=None, help="iterations (default: the fast preset's)")
    d.add_argument("--device", default="auto")
    d.add_argument("--quiet", action="store_true")
    d.set_defaults(func=run_demo)


def _read_mask(path: str) -> np.ndarray:
    mask, meta = read_image(path)
    if meta.channel_axis is not None:
        mask = mask[..., 0]
    return mask > 0


def restore_file(args: argparse.Namespace, task: str) -> tuple[np.ndarray, dict, ImageMeta]:
    """Read IN, run the task with a progress bar, return (output, report, input metadata)."""
    from .. import api
    from ..core.fit import drain
    from ..core.task import make_config

    image, meta = read_image(args.input)
    channel_axis = args.channel_axis if args.channel_axis is not None else meta.channel_axis
    truth = read_image(args.ground_truth)[0] if args.ground_truth else None
    if args.stop == "oracle" and truth is None:
        raise ValueError("--stop oracle needs --ground-truth (it is for evaluation only)")
    mask = _read_mask(args.mask) if task == "inpaint" else None
    config = make_config(task, preset=args.preset, factor=getattr(args, "factor", 1) or 1,
                         iterations=args.iterations, lr=args.lr, stop=args.stop, seed=args.seed,
                         precision=args.precision)
    gen = api.run(config, image, channel_axis=channel_axis, mask=mask, ground_truth=truth, device=args.device)
    bar = progress_bar(None, args.quiet, f"{task} {Path(args.input).name}")
    last = {"slice": None}

    def on_event(event) -> None:
        if isinstance(event, api.SliceProgress):
            if last["slice"] != event.slice:
                last["slice"] = event.slice
                bar.reset(total=event.progress.total)
                bar.set_description(f"{task} slice {event.position + 1}/{event.count}")
            bar.update(1)
            if event.progress.iteration % 50 == 0:
                bar.set_postfix(loss=f"{event.progress.loss[0]:.2e}")

    try:
        output, report = drain(gen, on_event)
    finally:
        bar.close()
    report["input"] = str(Path(args.input).resolve())
    return output, report, meta


def _output_spacing(meta: ImageMeta, factor: int) -> tuple[float, ...] | None:
    if not meta.spacing:
        return None
    return tuple(meta.spacing[:-2]) + tuple(s / factor for s in meta.spacing[-2:])


def run_task(args: argparse.Namespace) -> int:
    if Path(args.output).resolve() == Path(args.input).resolve():
        raise ValueError("the output path is the input path; choose another output so the input is kept")
    output, report, meta = restore_file(args, args.task)
    factor = report["factor"]
    written = write_image(args.output, output, meta, spacing=_output_spacing(meta, factor))
    report["output"] = str(written.resolve())
    write_report(args.report, report)
    _print_summary(report)
    return 0


def _print_summary(report: dict) -> None:
    slices = report["slices"]
    line = (f"{report['task']}: {len(slices)} slice(s), preset {report['preset']}, "
            f"{report['parameters']:,} parameters, {report['seconds']:.1f} s")
    with_gt = [s for s in slices if "psnr" in s]
    if with_gt:
        line += (f"; PSNR {np.mean([s['psnr_input'] for s in with_gt]):.2f} -> "
                 f"{np.mean([s['psnr'] for s in with_gt]):.2f} dB")
    print(line)
    print(f"wrote {report['output']}")


def run_demo(args: argparse.Namespace) -> int:
    from importlib.resources import files

    from .. import api

    clean = read_image(files("napari_dip") / "data" / "f16_crop.png")[0]
    rng = np.random.default_rng(0)
    noisy = np.clip(clean / 255.0 + rng.normal(0, 25 / 255, clean.shape), 0, 1)
    noisy = np.rint(noisy * 255).astype(np.uint8)
    out_dir = Path(args.output)
    start = time.perf_counter()
    print(f"denoising a 128x128 RGB crop of F16 with noise sigma 25/255 on {args.device} ...", flush=True)
    bar = progress_bar(None, args.quiet, "demo")

    def on_event(event) -> None:
        if isinstance(event, api.SliceProgress):
            if bar.total != event.progress.total:
                bar.reset(total=event.progress.total)
            bar.update(1)

    try:
        restored, report = api.denoise(noisy, channel_axis=-1, iterations=args.iterations, device=args.device,
                                       ground_truth=clean, return_report=True, callback=on_event)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    meta = ImageMeta(path="", format="picture", dtype="uint8", channel_axis=-1)
    for name, arr in (("noisy.png", noisy), ("denoised.png", restored), ("clean.png", clean)):
        write_image(out_dir / name, arr, meta)
    report["output"] = str((out_dir / "denoised.png").resolve())
    write_report(str(out_dir / "report.json"), report)
    s = report["slices"][0]
    print(f"PSNR noisy {s['psnr_input']:.2f} dB -> denoised {s['psnr']:.2f} dB "
          f"(SSIM {s['ssim_input']:.3f} -> {s['ssim']:.3f}); {s['iterations']} iterations in {seconds:.1f} s")
    print(f"wrote {out_dir.resolve()}/denoised.png (and noisy.png, clean.png, report.json)")
    return 0


