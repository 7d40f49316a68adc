"""``napari-dip denoise|superres|inpaint|demo``: Deep Image Prior from a file to a file."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from ..io import ImageMeta, read_image, write_image
from .baseline import add_noise_options
from .common import (VolumeProgress, add_dip_options, add_io_arguments, add_shared_options, add_volume_options, dip_settings,
                     progress_bar, write_report)
from .tiling import add_tiling_options, with_tiling


def register(sub) -> None:
    for name, helptext in (("denoise", "remove noise (A = identity)"),
                           ("superres", "super-resolve by an integer factor (Lanczos2 downsampling model)"),
                           ("inpaint", "fill the pixels where the mask is 0")):
        p = sub.add_parser(name, help=helptext, description=f"Deep Image Prior: {helptext}. Volumes "
                           "(TIFF stacks, NIfTI, NPY, Zarr) are processed slice by slice along --axis; runs "
                           "resume where they stopped. A Zarr output holds one slice (or one chunk with --batch-size/--warm-start) in memory at a time.")
        add_io_arguments(p)
        if name == "superres":
            p.add_argument("--factor", type=int, required=True, help="upsampling factor, 2..32")
        if name == "inpaint":
            p.add_argument("--mask", required=True, help="mask: non-zero = known pixel, 0 = to fill; "
                                                         "one slice's shape or the whole input's")
        add_shared_options(p)
        if name == "denoise":
            add_noise_options(p)  # auto: estimated per slice (docs/real-noise.md)
        add_dip_options(p)
        add_volume_options(p)
        add_tiling_options(p)
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
    mask = np.asarray(mask)
    if meta.channel_axis is not None:
        mask = mask[..., 0]
    return mask > 0


def _jobs(args: argparse.Namespace) -> list[tuple[Path, Path]]:
    """(input, output) pairs; outputs distinct and never an input."""
    from ..batch.files import expand_inputs, output_for
    inputs = expand_inputs(args.input)
    several = len(inputs) > 1
    if several and args.ground_truth:
        raise ValueError("--ground-truth needs a single input")
    jobs = [(src, output_for(src, args.output, several=several, suffix=args.task)) for src in inputs]
    sources = {src.resolve() for src, _ in jobs}
    seen: set[Path] = set()
    for src, out in jobs:
        if out.resolve() in sources:
            raise ValueError(f"the output {out} is an input; choose another output so the input is kept")
        if out.resolve() in seen:
            raise ValueError(f"two inputs would both write {out}; give them different names")
        seen.add(out.resolve())
    return jobs


def run_task(args: argparse.Namespace) -> int:
    from ..batch import ClusterLost, open_client, process_volume
    from . import UserError
    from ..core.task import make_config

    jobs = _jobs(args)
    config = make_config(args.task, preset=args.preset, factor=getattr(args, "factor", 1) or 1,
                         iterations=args.iterations, lr=args.lr, stop=args.stop, seed=args.seed,
                         precision=args.precision, inputs=getattr(args, "operator_inputs", None),
                         **dip_settings(args),
                         **({"noise": args.noise, "noise_params": args.noise_params} if args.task == "denoise" else {}))
    config = with_tiling(config, args)
    truth = read_image(args.ground_truth)[0] if args.ground_truth else None
    if args.stop == "oracle" and truth is None:
        raise ValueError("--stop oracle needs --ground-truth (it is for evaluation only)")
    mask = _read_mask(args.mask) if args.task == "inpaint" else None
    command = {k: getattr(args, k) for k in ("axis", "slices", "dtype", "workers", "scheduler", "retries",
                                              "restart", "wait", "channel_axis", "batch_size", "warm_start")}
    progress = VolumeProgress(args.task, quiet=args.quiet)
    reports, failures = [], []
    try:
        with open_client(workers=args.workers, scheduler=args.scheduler) as (client, threads):
            for src, out in jobs:
                try:
                    image, meta = read_image(src)
                    channel_axis = args.channel_axis if args.channel_axis is not None else meta.channel_axis
                    report = process_volume(config, image, meta, out, axis=args.axis, slices=args.slices,
                                            channel_axis=channel_axis, mask=mask, ground_truth=truth,
                                            device=args.device, dtype=args.dtype, client=client,
                                            retries=args.retries, threads=threads, restart=args.restart,
                                            on_event=progress, batch_size=args.batch_size,
                                            warm_start=args.warm_start, wait=args.wait)
                except ClusterLost as err:  # no input can go on without workers
                    raise UserError(str(err)) from None
                except Exception as err:  # one bad input must not stop the others
                    if len(jobs) == 1:
                        if isinstance(err, OSError) and not isinstance(err, (FileNotFoundError, PermissionError)):
                            raise UserError(_reason(err)) from None  # e.g. the disk filled up
                        raise
                    progress.close()
                    failures.append({"input": str(src.resolve()), "output": str(out.resolve()),
                                     "error": _reason(err)})
                    print(f"{args.task} {src.name}: FAILED: {failures[-1]['error']}", file=sys.stderr)
                    continue
                report["command"] = command
                reports.append(report)
                progress.close()
                _print_summary(report)
    except KeyboardInterrupt:
        progress.close()
        print("napari-dip: finished slices are kept beside the output; rerun the same command to resume",
              file=sys.stderr)
        raise
    finally:
        progress.close()
    write_report(args.report, reports[0] if len(jobs) == 1 else _summary(reports, failures, command))
    for failure in failures:
        print(f"napari-dip: FAILED {failure['input']}: {failure['error']}", file=sys.stderr)
    return 0 if not failures and all(r["complete"] for r in reports) else 1


def _reason(err: Exception) -> str:
    """One line: the message of a user error, the type and message of anything else."""
    text = " ".join(str(err).split()) or type(err).__name__
    return text if isinstance(err, (ValueError, OSError, ImportError)) else f"{type(err).__name__}: {text}"


def _summary(reports: list[dict], failures: list[dict], command: dict) -> dict:
    """One report for several inputs: totals, each input's report under ``volumes``, and the
    inputs that could not be processed under ``failed_inputs`` with the reason."""
    first = reports[0] if reports else {}
    keep = ("task", "preset", "stop", "seed", "factor", "code", "network", "fit", "device", "torch", "napari_dip")
    return {**{k: first.get(k) for k in keep}, "command": command,
            "inputs": len(reports) + len(failures), "complete": sum(r["complete"] for r in reports),
            "failed_inputs": failures,
            "processed_slices": sum(len(r["processed_slices"]) for r in reports),
            "skipped_slices": sum(len(r["skipped_slices"]) for r in reports),
            "failed_slices": sum(len(r["failed_slices"]) for r in reports),
            "seconds": sum(r["seconds"] for r in reports), "volumes": reports}


def _print_summary(report: dict) -> None:
    slices = report["slices"]
    name = Path(report["input"]).name if report["input"] else ""
    line = (f"{report['task']} {name}: {len(report['processed_slices'])} slice(s) restored, "
            f"{len(report['skipped_slices'])} skipped (already done), preset {report['preset']}, "
            f"{report['seconds']:.1f} s")
    with_gt = [s for s in slices if "psnr" in s]
    if with_gt:
        line += (f"; PSNR {np.mean([s['psnr_input'] for s in with_gt]):.2f} -> "
                 f"{np.mean([s['psnr'] for s in with_gt]):.2f} dB")
    print(line)
    if report["redone_slices"]:
        print(f"  {len(report['redone_slices'])} slice(s) fitted again (see the notes above and "
              "redone_slices in the report)")
    for failure in report["failed_slices"]:
        print(f"  slice {failure['slice']} FAILED: {failure['error']}")
    if report["complete"]:
        print(f"wrote {report['output']}" if report["written"] else f"up to date: {report['output']}")
    else:
        print(f"not finished: {len(report['missing_slices'])} slice(s) missing; finished slices are kept in "
              f"{report['store']}; rerun the same command to finish")


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


