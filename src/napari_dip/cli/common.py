"""Options and steps shared by the task subcommands."""
from __future__ import annotations

import argparse
import sys
import time

from ..core.presets import ARCHITECTURES
from ..core.stopping import STOP_RULES
from ..io import write_json


def add_io_arguments(p: argparse.ArgumentParser) -> None:
    """IN (files, folders, globs) and -o OUT, as every restoring command takes them."""
    p.add_argument("input", metavar="IN", nargs="+",
                   help="images or volumes: .tif/.tiff, .nii/.nii.gz, .png/.jpg, .npy, .zarr/.ome.zarr; "
                        "folders and globs")
    p.add_argument("-o", "--output", metavar="OUT", required=True,
                   help="output file (format from its name); a folder for several inputs")


def add_shared_options(p: argparse.ArgumentParser) -> None:
    """--preset, --iterations, --lr, --stop, --ground-truth, --seed, --device, --channel-axis, --report."""
    p.add_argument("--preset", help="named settings: fast (default) or paper")
    p.add_argument("--iterations", type=int, help="iterations per slice (default: the preset's)")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's)")
    p.add_argument("--stop", default="auto", choices=STOP_RULES,
                   help="stopping rule: auto (default), fixed (run all iterations), "
                        "oracle (best PSNR against --ground-truth; evaluation only)")
    p.add_argument("--ground-truth", metavar="GT", help="clean image: report PSNR/SSIM (needed by --stop oracle)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    p.add_argument("--precision", choices=("auto", "fp32", "bf16"), help="arithmetic precision")
    p.add_argument("--channel-axis", type=int, help="axis holding colour channels (RGB files: detected)")
    p.add_argument("--report", metavar="REPORT.json", help="write the fitting report here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_dip_options(p: argparse.ArgumentParser) -> None:
    """Deep Image Prior's network choice and automatic-stopping settings."""
    g = p.add_argument_group("network and automatic stopping")
    g.add_argument("--architecture", choices=ARCHITECTURES,
                   help="skip (the DIP paper's network, default) or resunet (residual U-Net with dropout)")
    g.add_argument("--stop-variant", choices=("emv", "wmv"),
                   help="auto stopping: emv (exponential moving variance, default) or wmv (windowed, ES-WMV)")
    g.add_argument("--stop-window", type=int, metavar="W", help="auto stopping: window / span W (default 100)")
    g.add_argument("--stop-patience", type=int, metavar="P",
                   help="auto stopping: iterations without a new variance minimum before stopping (default 300)")
    g.add_argument("--stop-min-iterations", type=int, metavar="N",
                   help="auto stopping: never stop before N iterations (default 200)")


def dip_settings(args: argparse.Namespace) -> dict:
    """make_config keywords from the options of :func:`add_dip_options`."""
    stopping = {k: v for k, v in (("variant", args.stop_variant), ("window", args.stop_window),
                                  ("patience", args.stop_patience),
                                  ("min_iterations", args.stop_min_iterations)) if v is not None}
    return {"architecture": args.architecture, "stopping": stopping or None}


def add_volume_options(p: argparse.ArgumentParser) -> None:
    """--axis, --slices, --dtype, --workers, --scheduler, --retries, --restart, --wait, --batch-size, --warm-start."""
    g = p.add_argument_group("volumes and batches")
    g.add_argument("--axis", help="slicing axis of a volume: an index, or axial/coronal/sagittal (NIfTI); "
                                  "default: axial for NIfTI, the first of Z, Y, X otherwise")
    g.add_argument("--slices", metavar="A:B", help="restore only these slices along the axis: A:B (slices "
                                                   "A..B-1), indices and ranges separated by commas (3,7,10:12) "
                                                   "or middle; the others are copied through unchanged")
    g.add_argument("--dtype", default="float32", choices=("float32", "input"),
                   help="output type: float32 (default) or the input's (NIfTI: with scaling)")
    g.add_argument("--workers", type=int, help="run slices on a local Dask cluster of N worker processes")
    g.add_argument("--scheduler", metavar="ADDRESS", help="run slices on an existing Dask cluster "
                                                          "(e.g. tcp://host:8786)")
    g.add_argument("--retries", type=int, default=2,
                   help="retries of a failed task (an error, or its worker died) on a cluster (default 2); "
                        "a slice that still fails stops the run")
    g.add_argument("--restart", action="store_true",
                   help="ignore finished slices from an earlier run instead of resuming")
    g.add_argument("--wait", action="store_true",
                   help="if another run is writing the same output, wait for it to end instead of refusing")
    g.add_argument("--batch-size", type=_batch_size, default=1, metavar="N",
                   help="slices fitted at once as independent networks: a number, or auto (as many as "
                        "memory allows; on a CPU up to 2^17 pixels, so it pays for small slices), resolved once "
                        "per run. Default 1. Results depend on it (and on torch's thread count), so it is part "
                        "of what a resumed run must match")
    g.add_argument("--warm-start", action=argparse.BooleanOptionalAction, default=False,
                   help="fit the first slice cold, then start each batch from the weights fitted to the "
                        "slice before it and stop each slice when its data fit matches the first slice's "
                        "(about a third of the iterations per slice, at cold quality on EM and MRI stacks). Slices "
                        "go in fixed chunks of one cold slice and 4 batches, the same in resumed and "
                        "distributed runs. Default: off")


def _batch_size(text: str) -> int | None:
    if text == "auto":
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 'auto' or a positive integer, got {text!r}")
    return value


def write_report(path: str | None, report: dict) -> None:
    """Write the report as JSON atomically."""
    if path:
        write_json(path, report, default=_jsonable)


def _jsonable(obj):
    import numpy as np
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return str(obj)


def progress_bar(total: int, quiet: bool, desc: str):
    """A tqdm bar on a terminal; plain occasional lines otherwise; nothing when quiet."""
    from tqdm.auto import tqdm
    disable = quiet
    return tqdm(total=total, desc=desc, unit="it", disable=disable, file=sys.stderr,
                mininterval=0.5 if sys.stderr.isatty() else 30.0, dynamic_ncols=True)


def tile_status(event) -> str:
    """'slice 0, tiles 3-4: iteration 120/1200, at most about 2 h 05 min left'."""
    p = event.progress
    tiles = f"tile {event.tiles[0]}" if len(event.tiles) == 1 else f"tiles {event.tiles[0]}-{event.tiles[-1]}"
    text = f"slice {event.slice}, {tiles}: iteration {p.iteration}/{p.total}"
    if event.eta is not None:
        hours, rest = divmod(int(event.eta), 3600)
        left = f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"
        text += f", at most about {left} left"
    return text


class VolumeProgress:
    """Slices of each volume: a tqdm bar on a terminal, one log line per slice otherwise."""

    def __init__(self, task: str, *, quiet: bool = False, stream=None):
        self.task = task
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.bar = None
        self.name = ""
        self.total = self.done = self.processed = 0
        self.started = 0.0

    def __call__(self, event) -> None:
        from ..api import SliceDone, SliceProgress
        from ..batch import Notice, SliceFailed, VolumeStart
        if isinstance(event, Notice):  # shown even with --quiet: it is about the results
            if self.bar is not None:
                self.bar.write(f"{self.task}: note: {event.text}", file=self.stream)
            else:
                print(f"{self.task}: note: {event.text}", file=self.stream, flush=True)
            return
        if self.quiet:
            return
        if isinstance(event, VolumeStart):
            self.close()
            self.name, self.total, self.done, self.processed = event.name, event.total, event.skipped, 0
            self.started = time.perf_counter()
            if self.tty:
                from tqdm import tqdm
                self.bar = tqdm(total=event.total, initial=event.skipped, desc=f"{self.task} {event.name}",
                                unit="slice", file=self.stream, dynamic_ncols=True)
            else:
                self._line(f"{event.total} slice(s), {event.skipped} already done")
        elif isinstance(event, SliceProgress) and event.tiles:
            p = event.progress  # a large slice in tiles: iterations of each batch of tiles, and the time left
            if self.bar is not None and (p.iteration % 10 == 0 or p.iteration == p.total):
                self.bar.set_postfix_str(tile_status(event))
            elif self.bar is None and p.iteration % max(1, p.total // 10) == 0:
                self._line(tile_status(event))
        elif isinstance(event, SliceProgress) and self.bar is not None:
            p = event.progress
            if p.iteration % 10 == 0 or p.iteration == p.total:
                self.bar.set_postfix_str(f"slice {event.slice}: iteration {p.iteration}/{p.total}")
        elif isinstance(event, SliceDone):
            self.done += 1
            self.processed += 1
            if self.bar is not None:
                self.bar.update(1)
            else:
                left = self.total - self.done
                eta = (time.perf_counter() - self.started) / self.processed * left
                self._line(f"slice {event.slice} done in {event.record.get('seconds', 0):.1f} s "
                           f"({self.done}/{self.total}, about {eta:.0f} s left)")
        elif isinstance(event, SliceFailed):
            message = f"slice {event.slice} failed: {event.error}"
            if self.bar is not None:
                self.bar.write(f"{self.task} {self.name}: {message}", file=self.stream)
            else:
                self._line(message)

    def _line(self, text: str) -> None:
        print(f"{self.task} {self.name}: {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
