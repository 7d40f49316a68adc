"""The full-size benchmark on a GPU (or any device): iterations per second and the section time.

Runs unchanged on a CUDA machine: times ``--timing`` iterations of the default denoising
fit of one 512 x 512 ISBI section (after ``--warmup`` iterations, synchronising the device
around the timed stretch only), counts on CUDA the host syncs per iteration of the default
run (PyTorch's sync debug mode; the loop reads the device once per iteration), then runs the
whole default run of the section as `napari-dip denoise IN -o OUT` does it (:mod:`section`),
and prints both as JSON lines.
The engine picks bf16 autocast with channels-last on GPUs that support bf16, fp32 elsewhere.

    python benchmarks/gpu.py                                            # CUDA if present
    python benchmarks/gpu.py --device cpu --size 64 --timing 3 --iterations 3   # smoke test
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from section import DATA, denoise_section, load_sections  # noqa: E402


def iterations_per_second(noisy, device: str, timing: int, warmup: int) -> dict:
    """Default-config fit of one section: iterations per second over ``timing`` iterations."""
    import torch
    from napari_dip.api import run
    from napari_dip.core.task import make_config

    config = make_config("denoise", stop="fixed", iterations=warmup + timing)
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       "cpu" if device == "auto" else device)
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    stamps = []
    precision = None
    for event in run(config, noisy[0], device=str(dev)):
        if hasattr(event, "progress"):
            if event.progress.iteration in (warmup, warmup + timing):
                sync()
                stamps.append(time.perf_counter())
        else:
            precision = event.record["precision"]
    seconds = stamps[-1] - stamps[0]
    return {"device": str(dev), "name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
            "precision": precision, "timed_iterations": timing,
            "iterations_per_s": round(timing / seconds, 3) if seconds > 0 else None}


def host_syncs_per_iteration(noisy, device: str, warmup: int, count: int = 20) -> float | None:
    """Synchronising calls per iteration of the default run (as the CLI's) on CUDA, counted
    from iteration ``warmup`` on by PyTorch's sync debug mode; None on other devices."""
    import warnings

    import torch
    from napari_dip import api

    if torch.device(device).type != "cuda":
        return None
    seen = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            def note(event):
                progress = getattr(event, "progress", None)
                if progress is not None and progress.iteration in (warmup, warmup + count):
                    seen[progress.iteration] = len(caught)
            api.denoise(noisy[0], device=device, iterations=warmup + count, callback=note)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return (seen[warmup + count] - seen[warmup]) / count


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cuda, cuda:N, mps, cpu")
    parser.add_argument("--section", type=int, default=20)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--timing", type=int, default=100, help="iterations timed (default 100)")
    parser.add_argument("--warmup", type=int, default=10, help="iterations before timing (default 10)")
    parser.add_argument("--iterations", type=int, help="cap for the section run (default: the preset's)")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    if args.timing < 1 or args.warmup < 1:
        parser.error("--timing and --warmup must be at least 1")
    clean, noisy = load_sections(args.section, 1, args.size, args.data)
    speed = iterations_per_second(noisy, args.device, args.timing, args.warmup)
    speed["host_syncs_per_iteration"] = host_syncs_per_iteration(noisy, speed["device"], args.warmup)
    print(json.dumps({"section": args.section, "size": args.size, **speed}), flush=True)
    row = denoise_section(noisy, clean, device=speed["device"], iterations=args.iterations)
    print(json.dumps({"section": args.section, "size": args.size, **row}), flush=True)
    return {"speed": speed, "section": row}


if __name__ == "__main__":
    main(sys.argv[1:])
