"""One full-size EM section, denoised as `napari-dip denoise IN -o OUT` does it (no options).

The section: ISBI 2012 stack section ``--section`` (default 20, held out from tuning),
scaled to [0, 1], Gaussian noise sigma 25/255 (numpy seed = the section index), clipped to
[0, 1]; PSNR against the original section. The run is the library call behind the CLI
(:func:`napari_dip.api.denoise` with defaults), so a checkout of any commit can be timed
with the same script (`PYTHONPATH=<checkout>/src`). Prints one JSON line: wall seconds,
CPU seconds of the process, iterations, stop iteration, PSNR and the settings used.

    python benchmarks/section.py --section 20                    # the full-size row
    python benchmarks/section.py --section 20 --stack 30         # the 30-section stack
    python benchmarks/section.py --section 20 --stack 3 --warm-start off   # cold, for comparison
    python benchmarks/section.py --section 20 --architecture shuffle       # another network
    python benchmarks/section.py --size 64 --iterations 3        # smoke test
    python benchmarks/section.py --costs skip:auto skip:fp32 shuffle:fp32 shuffle:bf16  # CPU s per iteration
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SIGMA = 25 / 255


def load_sections(first: int, count: int, size: int, data: Path = DATA) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float32 (count, size, size) in [0, 1]: sections first.. of the ISBI stack."""
    import tifffile
    stack = tifffile.imread(data / "em" / "isbi2012_train_volume.tif")
    index = [(first + k) % len(stack) for k in range(count)]
    clean = stack[index, :size, :size].astype(np.float32) / 255
    noisy = np.stack([np.clip(c + np.random.default_rng(i).normal(0, SIGMA, c.shape), 0, 1)
                      for i, c in zip(index, clean)]).astype(np.float32)
    return clean, noisy


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - ref) ** 2)))


def denoise_section(noisy: np.ndarray, clean: np.ndarray, *, device: str = "auto",
                    iterations: int | None = None, warm_start: bool | None = None,
                    architecture: str | None = None) -> dict:
    """Denoise with the defaults (``iterations`` overrides the cap, for smoke tests;
    ``warm_start`` the API's default, on for a stack; ``architecture`` the network's)."""
    from napari_dip import api
    options = {} if iterations is None else {"iterations": iterations}
    if architecture is not None:
        options["architecture"] = architecture
    if warm_start is not None:
        options["warm_start"] = warm_start
    image = noisy[0] if len(noisy) == 1 else noisy
    wall, cpu = time.perf_counter(), time.process_time()
    out, report = api.denoise(image, device=device, return_report=True, **options)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    out = out.reshape(noisy.shape)
    slices = report["slices"]
    return {
        "wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "sections": len(noisy),
        "psnr": round(float(np.mean([psnr(o, c) for o, c in zip(out, clean)])), 3),
        "psnr_noisy": round(float(np.mean([psnr(n, c) for n, c in zip(noisy, clean)])), 3),
        "iterations": [s["fitted_iterations"] for s in slices],
        "stop_iteration": [s["stop_iteration"] for s in slices],
        "warm_start": report["warm_start"], "batch_size": report["batch_size"],
        "psnr_per_section": [round(psnr(o, c), 3) for o, c in zip(out, clean)],
        "device": report["device"], "precision": report["precision"], "preset": report["preset"],
        "network": report["network"]["type"], "stopping": report["stopping"],
    }


def iteration_costs(noisy: np.ndarray, cases: list[str], rounds: int = 3, iterations: int = 2) -> dict:
    """CPU seconds per iteration (this process, best and median over ``rounds``) of the default
    fit of ``noisy[0]`` with each ``architecture:precision`` case, the cases interleaved."""
    import torch
    from napari_dip.core.fit import drain, fit
    from napari_dip.core.stopping import FixedStop
    from napari_dip.core.task import build_problem, make_config

    fits = {}
    for case in cases:
        architecture, precision = case.split(":")
        config = make_config("denoise", architecture=architecture, precision=precision,
                             stop="fixed", iterations=2 + rounds * iterations)
        problem = build_problem(config, torch.from_numpy(noisy[:1, None]), seeds=[0])
        gen = fit(problem, config.fit, FixedStop(1), device=torch.device("cpu"))
        next(gen), next(gen)  # warm-up
        fits[case] = (gen, [])
    for _ in range(rounds):
        for gen, times in fits.values():
            start = time.process_time()
            for _ in range(iterations):
                next(gen)
            times.append((time.process_time() - start) / iterations)
    for gen, _ in fits.values():
        drain(gen)
    return {case: {"best_s": round(min(t), 3), "median_s": round(sorted(t)[len(t) // 2], 3)}
            for case, (_, t) in fits.items()}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", type=int, default=20, help="first ISBI section (default 20)")
    parser.add_argument("--stack", type=int, default=1, help="sections to denoise as one stack (default 1)")
    parser.add_argument("--size", type=int, default=512, help="crop the sections to this size (default 512)")
    parser.add_argument("--iterations", type=int, help="iteration cap (default: the preset's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--warm-start", choices=("on", "off"),
                        help="warm starts across the stack (default: the API's, on)")
    parser.add_argument("--architecture", help="network architecture (default: the preset's skip network)")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--costs", nargs="+", metavar="ARCH:PRECISION",
                        help="only measure CPU s per iteration of these cases, e.g. skip:auto shuffle:fp32")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds for --costs")
    args = parser.parse_args(argv)
    clean, noisy = load_sections(args.section, args.stack, args.size, args.data)
    if args.costs:
        row = {"section": args.section, "size": args.size, "costs": iteration_costs(noisy, args.costs, args.rounds)}
        print(json.dumps(row), flush=True)
        return row
    row = {"section": args.section, "size": args.size,
           **denoise_section(noisy, clean, device=args.device, iterations=args.iterations,
                             warm_start=None if args.warm_start is None else args.warm_start == "on",
                             architecture=args.architecture)}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
