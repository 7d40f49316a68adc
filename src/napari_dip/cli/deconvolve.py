"""``napari-dip deconvolve IN --psf PSF.tif|--psf-sigma S -o OUT``: Deep Image Prior
deconvolution with a known point spread function, from a file to a file (volumes slice by
slice, resumable, as ``denoise``)."""
from __future__ import annotations

import argparse

import numpy as np

from ..io import read_image
from .common import add_dip_options, add_io_arguments, add_shared_options, add_volume_options
from .tiling import add_tiling_options


def register(sub) -> None:
    helptext = "deblur with a known point spread function (A = convolution with the PSF)"
    p = sub.add_parser("deconvolve", help=helptext, description=f"Deep Image Prior: {helptext}. Every slice "
                       "of a volume (along --axis) has the same 2D PSF; runs resume where they stopped.")
    add_io_arguments(p)
    psf = p.add_mutually_exclusive_group(required=True)
    psf.add_argument("--psf", metavar="PSF", help="the PSF as a 2D image file (normalised to sum 1; its "
                                                  "centre is pixel (rows // 2, columns // 2))")
    psf.add_argument("--psf-sigma", metavar="S", type=float, help="a Gaussian PSF of S pixels instead")
    p.add_argument("--psf-boundary", choices=("reflect", "zero", "circular"), default="reflect",
                   help="how the image continues past its edges in the blur model (default: reflect)")
    add_shared_options(p)
    add_dip_options(p)
    add_volume_options(p)
    add_tiling_options(p)  # tiles overlap by more than twice the PSF's radius
    p.set_defaults(func=run_deconvolve, task="deconvolve")


def read_psf(path: str) -> np.ndarray:
    """A 2D PSF from an image file (one channel; a single-slice stack is squeezed)."""
    psf, meta = read_image(path)
    psf = np.asarray(psf)
    if meta.channel_axis is not None:
        psf = np.take(psf, 0, axis=meta.channel_axis)
    psf = np.squeeze(psf)
    if psf.ndim != 2:
        raise ValueError(f"the PSF file {path} holds an array of shape {psf.shape}; it must be one 2D image")
    return psf.astype(np.float64)


def run_deconvolve(args: argparse.Namespace) -> int:
    from ..core.operators import gaussian_psf
    from .restore import run_task

    psf = read_psf(args.psf) if args.psf else gaussian_psf(args.psf_sigma).double().numpy()
    args.operator_inputs = {"psf": psf, "boundary": args.psf_boundary}
    return run_task(args)
