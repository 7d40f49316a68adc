"""Replay data-fit stopping rules on the real-noise fits that ``quality.py --experiments
realnoise`` recorded (``trace_<mode>.json``: per iteration the squared residual of the raw
output, per 10th iteration the affine-fitted PSNR / SSIM of the output).

    python benchmarks/realnoise_replay.py docs/quality/realnoise256/trace_*.json --crop 256

For each pair: the oracle (best recorded PSNR), and the discrepancy stop
(``napari_dip.core.noise_stop``: the residual, smoothed with span 25, at ``tau`` times the
variance the estimated model predicts) at several ``tau``, scored at the first recorded output
at or after its stop (outputs are recorded every 10 iterations). Writes a markdown table.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import quality as q  # noqa: E402 (beside this script)

from napari_dip.core.noise import NoiseModel  # noqa: E402
from napari_dip.core.noise_stop import DISCREPANCY_SPAN, noise_levels  # noqa: E402
from napari_dip.core.stopping import smoothed_loss  # noqa: E402

TAUS = (0.9, 1.0, 1.05, 1.1, 1.2)


def levels_of(trace: dict, pairs: list) -> list[float]:
    """The noise variance each pair's model predicts, in the fitted units of the trace's mode."""
    if trace["mode"] == "vst":
        return [s * s for s in trace["vst_sigma"]]  # unit variance, scaled by the domain's span
    out = []
    for p, m in zip(pairs, trace["models"]):
        unit = NoiseModel(**m).rescaled(0.0, 255.0)
        out.append(float(noise_levels(torch.from_numpy(p.noisy[None, None] / 255), [unit])[0]))
    return out


def residual_of(trace: dict) -> np.ndarray:
    """(iterations, G) squared residuals (the Gaussian mode's loss is that residual)."""
    return np.asarray(trace.get("residual") or trace["loss"], dtype=np.float64).T


def replay(trace: dict, pairs: list, taus=TAUS) -> list[dict]:
    smooth = smoothed_loss(residual_of(trace), DISCREPANCY_SPAN)
    its = np.asarray(trace["iterations"])
    rows = []
    for g, (name, level) in enumerate(zip(trace["images"], levels_of(trace, pairs))):
        psnr = np.asarray(trace["psnr"][g])
        best = int(np.argmax(psnr))
        row = {"image": name, "level": level, "oracle": (float(psnr[best]), int(its[best])),
               "ratio_at_oracle": float(smooth[its[best] - 1, g] / level)}
        for tau in taus:
            hit = np.nonzero(smooth[:, g] <= tau * level)[0]
            if len(hit):
                stop = int(hit[0]) + 1
                k = min(int(np.searchsorted(its, stop)), len(its) - 1)
                row[tau] = (float(psnr[k]), stop)
            else:
                row[tau] = (float(psnr[-1]), None)  # never reached: the last output
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("traces", nargs="+", type=Path)
    parser.add_argument("--crop", type=int, default=256, help="the centre crop the traces were fitted on (0: full)")
    parser.add_argument("--data", type=Path, default=q.DATA)
    args = parser.parse_args(argv)
    pairs = q.fluo_pairs(args.data, args.crop or None)
    for path in args.traces:
        trace = json.loads(path.read_text())
        rows = replay(trace, [p for p in pairs if p.name in trace["images"]])
        print(f"\n{path} ({trace['mode']}): PSNR dB (stop iteration); residual / level at the oracle")
        print("| image | oracle | residual/level at oracle | " + " | ".join(f"tau {t:g}" for t in TAUS) + " |")
        print("|---" * (3 + len(TAUS)) + "|")
        for r in rows:
            cells = [f"{r[t][0]:.2f} ({r[t][1] or 'never'})" for t in TAUS]
            print(f"| {r['image']} | {r['oracle'][0]:.2f} ({r['oracle'][1]}) | {r['ratio_at_oracle']:.3f} | "
                  + " | ".join(cells) + " |")
        for t in TAUS:
            gaps = [r["oracle"][0] - r[t][0] for r in rows]
            print(f"tau {t:g}: median gap to oracle {statistics.median(gaps):.2f} dB, max {max(gaps):.2f}; "
                  f"median PSNR {statistics.median(r[t][0] for r in rows):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
