"""Peak memory of `napari-dip denoise` on a large volume: how much of it the data path takes.

Writes a synthetic uint16 volume (``--shape``, default 16 x 2048 x 2048: 128 MB; a smooth
pattern plus Gaussian noise, an ImageJ TIFF with spacing), then runs the command given after
``--`` on it in a child process (``IN`` and ``OUT`` in it stand for the volume and the output)
and prints one JSON line: the child's peak RSS (``ru_maxrss``, what ``/usr/bin/time -v``
reports) and the peaks of its anonymous and file-backed resident memory, sampled every 20 ms
(memory-mapped files count in RSS while their pages are resident; only anonymous memory is
held in RAM for good). Point ``PYTHONPATH`` at the sources to measure.

    OMP_NUM_THREADS=1 nice -n 15 python benchmarks/output_memory.py --folder /tmp/om -- \\
        denoise IN -o OUT --slices 0:1 --tile-size 512 --iterations 2 --stop fixed --quiet
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path


def write_volume(path: Path, shape: tuple[int, ...]) -> None:
    import numpy as np
    import tifffile
    rng = np.random.default_rng(0)
    y, x = np.mgrid[:shape[-2], :shape[-1]]
    base = (1000 + 800 * np.sin(x / 50) * np.cos(y / 70)).astype(np.float32)
    volume = np.empty(shape, np.uint16)
    for z in range(shape[0]):
        volume[z] = np.clip(base + rng.normal(0, 100, base.shape), 0, 65535).astype(np.uint16)
    tifffile.imwrite(path, volume, imagej=True, metadata={"axes": "ZYX", "spacing": 2.0, "unit": "um"},
                     resolution=(2.0, 2.0))


def resident(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed and shared) resident bytes of a process."""
    with open(f"/proc/{pid}/status") as fh:
        fields = dict(line.split(":", 1) for line in fh if ":" in line)
    kb = lambda key: int(fields[key].split()[0]) * 1024  # noqa: E731
    return kb("RssAnon"), kb("RssFile") + kb("RssShmem")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", default="16,2048,2048", help="the volume's Z,Y,X")
    parser.add_argument("--folder", type=Path, required=True, help="where the volume and the output go")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- then the napari-dip arguments")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    volume = args.folder / f"volume_{args.shape.replace(',', 'x')}.tif"
    if not volume.exists():
        write_volume(volume, tuple(int(n) for n in args.shape.split(",")))
    words = [w for w in args.command if w != "--"]
    out = args.folder / f"out_{os.getpid()}.tif"
    words = [str(volume) if w == "IN" else str(out) if w == "OUT" else w for w in words]
    began = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "napari_dip.cli", *words])
    anon = file = 0
    while child.poll() is None:
        try:
            a, f = resident(child.pid)
            anon, file = max(anon, a), max(file, f)
        except (OSError, KeyError):
            pass
        time.sleep(0.02)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    print(json.dumps({"command": words, "returncode": child.returncode,
                      "seconds": round(time.perf_counter() - began, 1), "peak_rss_mb": round(peak / 2 ** 20),
                      "peak_anonymous_mb": round(anon / 2 ** 20), "peak_file_backed_mb": round(file / 2 ** 20),
                      "output": str(out), "load_average": os.getloadavg()[0]}))


if __name__ == "__main__":
    main()
