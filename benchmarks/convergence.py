"""PSNR per iteration of the default denoising fit, by image size: how far a fit gets by the cap.

A crop of ``--size`` pixels at (``--at``, ``--at``) of ISBI section 20 (held out), with the
noise of ``benchmarks/fullsize.py`` (sigma 25/255, seed 0, clipped), is denoised with the
defaults (``--lr`` overrides the learning rate) and the ground truth given, so the PSNR of
every iteration's output is recorded; the automatic rule decides the result as usual. Prints
one JSON line: CPU seconds, the rule's stop and PSNR, the PSNR every 50 iterations, the best
PSNR and its iteration. ``--repeat K`` lays the noisy crop (and its clean one) out K x K times,
an image K times the side with nothing new in it; ``--stop fixed`` runs to the cap.
``--code-noise S`` fixes the code noise at S for every size (the preset scales it down above
``code_noise_side``); ``--code`` and ``--upsample`` change the code and the network's upsampling.

    python benchmarks/convergence.py --size 128          # one row
    python benchmarks/convergence.py --size 64 --iterations 60   # smoke test
    for s in 64 128 256; do python benchmarks/convergence.py --size $s; done
    python benchmarks/convergence.py --size 128 --repeat 2 --stop fixed --iterations 600
    python benchmarks/convergence.py --size 512 --at 0 --stop fixed --code-noise 0.0333   # the old default
"""
from __future__ import annotations

import argparse
import json
import time

import numpy as np

from fullsize import image, psnr


def curve(size: int, at: int, lr: float | None, iterations: int | None = None, architecture: str | None = None,
          repeat: int = 1, stop: str = "auto", code_noise: float | None = None, code: str | None = None,
          upsample: str | None = None) -> dict:
    from dataclasses import replace

    from napari_dip import api
    from napari_dip.core.fit import drain
    clean, noisy = image(512, 20)
    clean, noisy = (np.tile(x[at:at + size, at:at + size], (repeat, repeat)) for x in (clean, noisy))
    psnrs: list[float] = []

    def record(event):
        if hasattr(event, "progress") and event.progress.psnr is not None:
            psnrs.append(float(np.ravel(event.progress.psnr)[0]))

    options = api.Options.of(dict(lr=lr, iterations=iterations, architecture=architecture, stop=stop, code=code,
                                  noise="auto", network=None if upsample is None else {"upsample": upsample}))
    config = options.config("denoise")
    if code_noise is not None:
        config = replace(config, fit=replace(config.fit, code_noise=code_noise, code_noise_side=0))
    cpu = time.process_time()
    out, report = drain(api.run(config, noisy, ground_truth=clean), record)
    cpu = time.process_time() - cpu
    record_ = report["slices"][0]
    return {"size": size, "at": at, "repeat": repeat, "stop": stop, "architecture": architecture or "skip", "lr": report["fit"]["lr"],
            "code_noise": record_["code_noise"], "code": config.code, "upsample": getattr(config.network, "upsample", None),
            "precision": record_["precision"], "cpu_s": round(cpu, 1),
            "psnr_noisy": round(psnr(noisy, clean), 2), "psnr_auto": round(psnr(out, clean), 2),
            "stop_iteration": record_["stop_iteration"], "iterations": record_["iterations"],
            "psnr_every_50": [round(p, 2) for p in psnrs[49::50]],
            "best": round(max(psnrs), 2), "best_at": int(np.argmax(psnrs)) + 1}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128, help="crop side (at most 512 - --at)")
    ap.add_argument("--at", type=int, default=128, help="the crop's top-left row and column (default 128)")
    ap.add_argument("--lr", type=float, default=None, help="learning rate (default: the preset's)")
    ap.add_argument("--iterations", type=int, default=None, help="iteration cap (default: the preset's)")
    ap.add_argument("--architecture", default=None, help="network architecture (default: the preset's)")
    ap.add_argument("--repeat", type=int, default=1, help="lay the crop out K x K times (default 1)")
    ap.add_argument("--stop", default="auto", help="stopping rule (default auto; fixed: run to the cap)")
    ap.add_argument("--code-noise", type=float, default=None, help="code noise at every size (default: the preset's)")
    ap.add_argument("--code", default=None, help="the network's code (default: the preset's)")
    ap.add_argument("--upsample", default=None, help="the network's upsampling (default: the preset's)")
    args = ap.parse_args()
    print(json.dumps(curve(args.size, args.at, args.lr, args.iterations, args.architecture, args.repeat, args.stop,
                           args.code_noise, args.code, args.upsample)))


if __name__ == "__main__":
    main()
