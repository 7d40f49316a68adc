"""``napari-dip baseline``: a classical denoiser (VST+BM3D or NLM) under the estimated noise
model, from a file to a file, to compare with what Deep Image Prior gives."""
from __future__ import annotations

import argparse

from ..baselines import BASELINES, denoise_baseline, require_bm3d, require_skimage
from ..core.noise import NOISE_CHOICES, parse_noise_params
from ..io import read_image, write_image
from .common import write_report


def register(sub) -> None:
    p = sub.add_parser("baseline", help="classical denoising (vst-bm3d or nlm) with the estimated noise model",
                       description="Denoise with BM3D or non-local means under the image's noise model "
                                   "(estimated per slice, or --noise-params): in the generalised-Anscombe "
                                   "domain for Poisson-Gaussian noise, on the image for Gaussian noise. "
                                   "Stacks are denoised slice by slice over their leading axes.")
    p.add_argument("input", metavar="IN", help="image or stack (.tif, .png, .npy, .nii.gz, .zarr)")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="output file (format from its name)")
    p.add_argument("--method", default="vst-bm3d", choices=BASELINES,
                   help="vst-bm3d (default; needs the bm3d package: pip install 'napari-dip[baselines]') or nlm")
    add_noise_options(p)
    p.add_argument("--channel-axis", type=int, help="axis holding colour channels (RGB files: detected)")
    p.add_argument("--dtype", default="float32", choices=("float32", "input"),
                   help="output type: float32 (default) or the input's")
    p.add_argument("--report", metavar="REPORT.json", help="write the report (noise model per slice) here")
    p.set_defaults(func=run_baseline)


def add_noise_options(p: argparse.ArgumentParser) -> None:
    """--noise and --noise-params."""
    p.add_argument("--noise", default="auto", choices=NOISE_CHOICES,
                   help="noise model: auto (default; chosen per slice by goodness of fit), gaussian, "
                        "poisson-gaussian, poisson or rician (MRI magnitude)")
    p.add_argument("--noise-params", type=_params, metavar="A,B",
                   help="variance = A * intensity + B in the input's units (e.g. camera gain and read "
                        "noise variance), instead of estimating them")


def _params(text: str) -> tuple[float, float]:
    try:
        return parse_noise_params(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def run_baseline(args: argparse.Namespace) -> int:
    require_bm3d() if args.method == "vst-bm3d" else require_skimage()  # one line before reading anything
    image, meta = read_image(args.input)
    channel_axis = args.channel_axis if args.channel_axis is not None else meta.channel_axis
    out, report = denoise_baseline(image, args.method, noise=args.noise, noise_params=args.noise_params,
                                   channel_axis=channel_axis)
    path = write_image(args.output, out, meta, dtype=args.dtype)
    report.update(input=str(meta.path), output=str(path.resolve()))
    write_report(args.report, report)
    models = {(r["noise"]["kind"], round(r["noise"]["a"], 4), round(r["noise"]["b"], 4)) for r in report["slices"]}
    text = "; ".join(f"{k} a={a:g} b={b:g}" for k, a, b in sorted(models)[:3])
    print(f"baseline {args.method}: {len(report['slices'])} slice(s), noise {text}{' ...' if len(models) > 3 else ''}")
    print(f"wrote {path}")
    return 0
