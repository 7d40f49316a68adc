"""The discrepancy stop on synthetic Gaussian noise, against the default variance rule (ES-EMV).

On real (signal-dependent) noise the automatic rule is the discrepancy stop
(``core/noise_stop.py``); Gaussian slices keep ES-EMV. This scores both on the quality
harness's 8 denoising crops (``quality.py --experiments denoise``: same crops, sigma 25/255
noise with seed 0, fast preset, network seed 0, one batch per crop shape): one fit each to the
cap, the oracle, ES-EMV and the discrepancy stop at several ``tau`` judged over the same fit.
The noise level is what the product would use: the Gaussian model estimated from the noisy crop
(``NoiseSetup.model``), its ratio to the true variance of the added (clipped) noise printed
beside. The last rule is ES-EMV gated by the discrepancy stop (tau 1): its minimum search starts
once the residual has reached the noise level. Prints a Markdown table.

    python benchmarks/gaussian_stops.py                      # 64 x 64, 1200 iterations
    python benchmarks/gaussian_stops.py --crop 64 --iterations 12   # smoke test
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from evaluation import EvaluationStop
from quality import DATA, _by_shape, add_noise, denoise_crops, score

TAUS = (0.9, 1.0, 1.1)


class _Rules:
    """The harness's rule (oracle and ES-EMV) and other rules judged over the same fit, which
    never end it."""

    needs_ground_truth = True

    def __init__(self, evaluation: EvaluationStop, discrepancies: list):
        self.evaluation, self.discrepancies = evaluation, discrepancies

    def observe(self, iteration, output, candidate, psnr, loss=None):
        for rule in self.discrepancies:
            rule.observe(iteration, output, candidate, psnr, loss)
        return self.evaluation.observe(iteration, output, candidate, psnr, loss)

    def result(self):
        return self.evaluation.result()


def score_group(config, noisy: list[np.ndarray], clean: list[np.ndarray]) -> list[dict]:
    """One batch of same-shape crops: per crop the oracle, ES-EMV and discrepancy results."""
    import torch
    from napari_dip.core.fit import drain, fit
    from napari_dip.core.noise_setup import NoiseSetup
    from napari_dip.core.noise_stop import DiscrepancyStop, noise_levels
    from napari_dip.core.stopping import GatedVarianceStop
    from napari_dip.core.task import build_problem
    observed = torch.from_numpy(np.stack(noisy))
    models = [NoiseSetup("gaussian").model(y)[0] for y in noisy]
    levels = noise_levels(observed, models)
    rules = _Rules(EvaluationStop(len(noisy), [config.stopping]),
                   [DiscrepancyStop(observed, levels, tau=tau) for tau in TAUS]
                   + [GatedVarianceStop(len(noisy), config.stopping, DiscrepancyStop(observed, levels))])
    problem = build_problem(config, observed, seeds=[config.seed] * len(noisy),
                            ground_truth=torch.from_numpy(np.stack(clean)))
    drain(fit(problem, config.fit, rules, device=torch.device("cpu")))
    rows = []
    oracle, oracle_it = rules.evaluation.oracle.result()
    emv, emv_it = rules.evaluation.autos[0].result()
    *stops, (gated, gated_it) = [rule.result() for rule in rules.discrepancies]
    for k, (y, x) in enumerate(zip(noisy, clean)):
        rows.append({"oracle": (score(oracle[k].numpy(), x)[0], oracle_it[k]),
                     "emv": (score(emv[k].numpy(), x)[0], emv_it[k]),
                     "gated": (score(gated[k].numpy(), x)[0], gated_it[k]),
                     "discrepancy": [(score(out[k].numpy(), x)[0], its[k]) for out, its in stops],
                     "level_ratio": float(levels[k]) / float(np.mean((y - x) ** 2))})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crop", type=int, default=64, help="crop side (default 64, the harness's)")
    ap.add_argument("--slices", type=int, default=2, help="ISBI slices (default 2, the harness's)")
    ap.add_argument("--iterations", type=int, default=None, help="iteration cap (default: the preset's)")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args()
    from napari_dip.core.task import make_config
    config = make_config("denoise", iterations=args.iterations, seed=0)
    crops = denoise_crops(args.data, args.crop, args.slices)
    noisy = [add_noise(c.image, 25 / 255, 0) for c in crops]
    rows: list = [None] * len(crops)
    for idx in _by_shape(noisy).values():
        for i, row in zip(idx, score_group(config, [noisy[i] for i in idx], [crops[i].image for i in idx])):
            rows[i] = row
    taus = " | ".join(f"discrepancy tau {t} (it)" for t in TAUS)
    print(f"| crop | oracle (it) | ES-EMV, the default (it) | {taus} | ES-EMV gated by tau 1 (it) "
          "| estimated / true noise variance |")
    print("|---" * (5 + len(TAUS)) + "|")
    gaps: dict = {"ES-EMV": [], "gated": []} | {f"tau {t}": [] for t in TAUS}
    for crop, r in zip(crops, rows):
        cells = " | ".join(f"{p:.2f} ({it})" for p, it in r["discrepancy"])
        print(f"| {crop.name} | {r['oracle'][0]:.2f} ({r['oracle'][1]}) | {r['emv'][0]:.2f} ({r['emv'][1]}) | "
              f"{cells} | {r['gated'][0]:.2f} ({r['gated'][1]}) | {r['level_ratio']:.2f} |")
        gaps["ES-EMV"].append(r["oracle"][0] - r["emv"][0])
        gaps["gated"].append(r["oracle"][0] - r["gated"][0])
        for t, (p, _) in zip(TAUS, r["discrepancy"]):
            gaps[f"tau {t}"].append(r["oracle"][0] - p)
    print("\nGap to the oracle, median / max (dB): "
          + "; ".join(f"{k} {np.median(v):.2f} / {np.max(v):.2f}" for k, v in gaps.items()))


if __name__ == "__main__":
    main()
