"""One full-size EM section, denoised as `napari-dip denoise IN -o OUT` does it (no options).

The section: ISBI 2012 stack section ``--section`` (default 20, held out from tuning),
scaled to [0, 1], Gaussian noise sigma 25/255 (numpy seed = the section index), clipped to
[0, 1]; PSNR against the original section. The run is the library call behind the CLI
(:func:`napari_dip.api.denoise` with defaults), so a checkout of any commit can be timed
with the same script (`PYTHONPATH=<checkout>/src`). Prints one JSON line: wall seconds,
CPU seconds of the process, iterations, stop iteration, PSNR and the settings used.

    python benchmarks/section.py --section 20                    # the full-size row
    python benchmarks/section.py --section 20 --stack 30         # the 30-section stack
    python benchmarks/section.py --size 64 --iterations 3        # smoke test
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
                    iterations: int | None = None) -> dict:
    """Denoise with the defaults (``iterations`` overrides the cap, for smoke tests)."""
    from napari_dip import api
    options = {} if iterations is None else {"iterations": iterations}
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
        "device": report["device"], "precision": report["precision"], "preset": report["preset"],
        "network": report["network"]["type"], "stopping": report["stopping"],
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--section", type=int, default=20, help="first ISBI section (default 20)")
    parser.add_argument("--stack", type=int, default=1, help="sections to denoise as one stack (default 1)")
    parser.add_argument("--size", type=int, default=512, help="crop the sections to this size (default 512)")
    parser.add_argument("--iterations", type=int, help="iteration cap (default: the preset's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args(argv)
    clean, noisy = load_sections(args.section, args.stack, args.size, args.data)
    row = {"section": args.section, "size": args.size,
           **denoise_section(noisy, clean, device=args.device, iterations=args.iterations)}
    print(json.dumps(row), flush=True)
    return row


if __name__ == "__main__":
    main(sys.argv[1:])
