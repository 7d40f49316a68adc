"""Full-size benchmarks: denoising whole images against tiles, wall time, peak memory, PSNR, seams.

Images (ISBI 2012 EM training volume, scaled to [0, 1]; Gaussian noise sigma 25/255 with seed 0,
clipped to [0, 1]; PSNR against the clean image):

- ``512``: section ``--section`` (default 20, held out from tuning; 512 x 512); a size below
  512: the section's top-left crop of that size;
- ``2048``: 16 sections from ``--section`` on laid out 4 x 4, row by row (2048 x 2048);
- ``4096``: 8 x 8 sections, place k holding section (``--section`` + k) mod 30 (the volume has
  30), for time and memory.

``--image`` a real-noise pair of ``../shared/data/fluo`` instead (``w2s-020_1``, ``w2s-044_0``,
``w2s-077_2``, ``fmd-confocal-fish3``; 512 x 512, size 512 only): the one noisy frame is denoised
in its own 8-bit units and scored like benchmarks/quality.py's real-noise rows (PSNR / SSIM
after the least-squares affine map onto the clean average).

Each row runs in a fresh process (``--one``) so that its peak resident memory is its own;
``peak_rss`` is that process's maximum RSS (torch and the arrays included), ``fit_peak`` the
part above the RSS just before fitting. ``seam_psnr`` is the PSNR in bands of +-``--band``
pixels around the lines where tiles hand over, against the whole-image fit's PSNR in the same
bands (rows of the same image). The device is automatic (CUDA when present).

    python benchmarks/fullsize.py --sizes 512 --tiles 0,256 --out docs-fullsize.json
    python benchmarks/fullsize.py --one 512 256 --iterations 400   # one row, JSON on stdout

Rows already in the work folder (``<out without .json>/out_SIZE_TILE.npy`` and ``.json``,
e.g. from ``--one ... --save`` run in parallel) are reused, not run again.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "em" / "isbi2012_train_volume.tif"
SIGMA = 25 / 255


def image(size: int, section: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) float32 images of side ``size`` (a multiple of 512) from ISBI sections,
    the first being ``section``."""
    import tifffile
    stack = tifffile.imread(DATA).astype(np.float32) / 255.0
    k = size // 512
    if size < 512:  # a crop of the section (the top-left size x size pixels), for a loaded host
        k, stack = 1, stack[:, :size, :size]
    elif k * 512 != size:
        raise ValueError(f"size must be below 512 or a multiple of 512, got {size}")
    clean = np.block([[stack[(section + r * k + c) % len(stack)] for c in range(k)] for r in range(k)]).astype(np.float32)
    rng = np.random.default_rng(0)
    noisy = np.clip(clean + rng.normal(0, SIGMA, clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def psnr(x: np.ndarray, ref: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.clip(x, 0, 1) - ref) ** 2)))


def real_pair(name: str) -> tuple[np.ndarray, np.ndarray]:
    """(clean, noisy) of a real-noise pair, both 512 x 512 in 8-bit units."""
    from quality import fluo_pairs  # benchmarks/, beside this script
    pair = {p.name: p for p in fluo_pairs(DATA.parents[1])}[name]
    return pair.clean, pair.noisy


def in_unit(x: np.ndarray, clean: np.ndarray, real: bool) -> tuple[np.ndarray, np.ndarray]:
    """(output, clean) on the scale PSNR is taken on: as they are for ISBI; for a real pair the
    output's least-squares affine map onto the clean image, both divided by 255."""
    if not real:
        return x, clean
    from quality import affine_map
    return affine_map(x, clean), clean / 255


def scores(x: np.ndarray, clean: np.ndarray, real: bool) -> dict:
    """PSNR against the clean image; for a real pair affine-fitted PSNR and SSIM."""
    if not real:
        return {"psnr": psnr(x, clean)}
    from quality import affine_score
    p, q = affine_score(x, clean)
    return {"psnr": p, "ssim": q}


def seam_mask(shape: tuple[int, int], tile: int, band: int) -> np.ndarray:
    """True within ``band`` pixels of the lines where tiles of side ``tile`` hand over."""
    from napari_dip.core.tiling import TileGrid
    from napari_dip.tiled import overlap_for
    grid = TileGrid.make(shape, tile, overlap_for(tile))
    ys, xs = grid.edges()
    m = np.zeros(shape, bool)
    for y in ys:
        m[max(0, y - band):y + band] = True
    for x in xs:
        m[:, max(0, x - band):x + band] = True
    return m


def one(size: int, tile: int, iterations: int | None, stop: str, max_memory: str | None, out: str | None,
        cancel_after: int | None = None, section: int = 20, architecture: str | None = None,
        pair: str | None = None, precision: str | None = None) -> dict:
    """Denoise one image (tile 0: whole) and return its row; saves the output to ``out``.

    ``cancel_after`` N stops the run after N iterations of its first fit (for sizes that take
    too long: the row then has the time per iteration and the peak memory of that fit)."""
    import psutil
    import torch

    from napari_dip import api
    clean, noisy = real_pair(pair) if pair else image(size, section)
    before = psutil.Process().memory_info().rss
    seen = {"iterations": 0, "first": None}
    start = time.perf_counter()

    def on_event(event):
        if hasattr(event, "progress"):
            seen["iterations"] += 1
            if seen["first"] is None and event.progress.iteration == 5:
                seen["first"] = (time.perf_counter() - start) / 5

    restored, report = api.denoise(noisy, iterations=iterations, stop=stop, return_report=True, callback=on_event,
                                   tile_size=tile or None, max_memory=max_memory, architecture=architecture,
                                   precision=precision,
                                   cancel=None if cancel_after is None else lambda: seen["iterations"] >= cancel_after)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if out:
        np.save(out, restored)
    records = report["slices"][0]
    tiles = records.get("tiles", [records])
    row = {"size": size, "section": None if pair else section, "image": pair or "isbi", "tile": tile or None, "device": report["device"], "threads": torch.get_num_threads(),
           "wall_s": round(seconds, 1), "iterations_per_problem": [t["iterations"] for t in tiles],
           "stop_iterations": [t["stop_iteration"] for t in tiles], "problems": len(tiles),
           "events": seen["iterations"], "s_per_event_first5": seen["first"],
           "peak_rss_gb": round(peak / 2 ** 30, 3), "fit_peak_gb": round((peak - before) / 2 ** 30, 3),
           **{f"{k}_noisy": v for k, v in scores(noisy, clean, bool(pair)).items()},
           **scores(restored, clean, bool(pair)), "noise": records.get("noise", tiles[0].get("noise")),
           "stop_rule": records.get("stop_rule", tiles[0].get("stop_rule")), "tiling": report.get("tiling"),
           "precision": report["precision"], "stop": stop, "iterations_cap": report["fit"]["iterations"],
           "architecture": report["architecture"], "cancelled": report["cancelled"], "s_per_event": seconds / max(seen["iterations"], 1)}
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--one", nargs=2, type=int, metavar=("SIZE", "TILE"), help="run one row (TILE 0: whole)")
    ap.add_argument("--sizes", default="512", help="comma-separated image sides (512, 2048, 4096; below 512: a crop)")
    ap.add_argument("--tiles", default="0,256", help="comma-separated tile sides, 0 = the whole image")
    ap.add_argument("--iterations", type=int, default=None, help="iteration cap (default: the preset's)")
    ap.add_argument("--stop", default="auto", help="stopping rule (default: auto)")
    ap.add_argument("--max-memory", default=None, help="memory budget, e.g. 3GB")
    ap.add_argument("--section", type=int, default=20, help="first ISBI section (default 20, held out)")
    ap.add_argument("--image", default=None, help="a real-noise pair instead of ISBI sections (size 512), e.g. w2s-020_1")
    ap.add_argument("--band", type=int, default=8, help="half width of the seam bands, pixels")
    ap.add_argument("--save", default=None, help="--one: save the output (.npy)")
    ap.add_argument("--cancel-after", type=int, default=None, metavar="N",
                    help="--one: stop after N iterations of the first fit (time per iteration and memory only)")
    ap.add_argument("--architecture", default=None, help="network architecture (default: the preset's)")
    ap.add_argument("--precision", default=None, choices=("auto", "fp32", "bf16"), help="default: the preset's (auto)")
    ap.add_argument("--out", default="fullsize.json", help="results (JSON), one row per run")
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(*args.one, args.iterations, args.stop, args.max_memory, args.save, args.cancel_after,
                             args.section, args.architecture, args.image, args.precision)))
        return
    rows = []
    work = Path(args.out).with_suffix("")
    work.mkdir(parents=True, exist_ok=True)
    for size in [int(s) for s in args.sizes.split(",")]:
        clean, _ = real_pair(args.image) if args.image else image(size, args.section)
        outputs = {}
        for tile in [int(t) for t in args.tiles.split(",")]:
            save = work / f"out_{size}_{tile}.npy"
            saved_row = save.with_suffix(".json")  # a row run before (e.g. by hand with --one)
            if save.is_file() and saved_row.is_file():
                rows.append(json.loads(saved_row.read_text().strip().splitlines()[-1]))
                outputs[tile] = np.load(save)
                continue
            cmd = [sys.executable, __file__, "--one", str(size), str(tile), "--stop", args.stop,
                   "--section", str(args.section), "--save", str(save)]
            cmd += ["--iterations", str(args.iterations)] if args.iterations else []
            cmd += ["--max-memory", args.max_memory] if args.max_memory else []
            cmd += ["--architecture", args.architecture] if args.architecture else []
            cmd += ["--precision", args.precision] if args.precision else []
            cmd += ["--image", args.image] if args.image else []
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                print(done.stderr, file=sys.stderr)
                continue
            row = json.loads(done.stdout.strip().splitlines()[-1])
            outputs[tile] = np.load(save)
            rows.append(row)
            Path(args.out).write_text(json.dumps(rows, indent=1))
            print(json.dumps(row), flush=True)
        if 0 in outputs:
            for row in rows:
                if row["size"] == size and row["tile"]:
                    m = seam_mask(clean.shape, row["tile"], args.band)
                    tiled, ref = in_unit(outputs[row["tile"]], clean, bool(args.image))
                    whole, _ = in_unit(outputs[0], clean, bool(args.image))
                    row["seam_psnr"] = psnr(tiled[m], ref[m])
                    row["seam_psnr_whole"] = psnr(whole[m], ref[m])
                    row["psnr_whole"] = psnr(whole, ref)
        Path(args.out).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
