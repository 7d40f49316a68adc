"""Options and steps shared by the task subcommands."""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from ..core.stopping import STOP_RULES


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


def write_report(path: str | None, report: dict) -> None:
    """Write the report as JSON atomically."""
    if not path:
        return
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(report, fh, indent=2, default=_jsonable)
    os.replace(tmp, p)


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
