"""Deconvolution (Deep Image Prior): A = convolution with a known point spread function.

The PSF is an image layer (a measured bead, normalised to sum 1; its centre is pixel
(rows // 2, columns // 2)) or a Gaussian of a given sigma in pixels.
"""
from __future__ import annotations

import numpy as np
from magicgui.widgets import ComboBox, FloatSpinBox

from .form import TaskForm, layer_choices

GAUSSIAN = "Gaussian (sigma below)"


class DeconvolveWidget(TaskForm):
    """Dock widget: deblur an image layer, a slice, a range or a whole stack with one PSF."""

    task = "deconvolve"
    title = "DIP deconvolve"

    def task_fields(self) -> list:
        from napari.layers import Image

        layers = layer_choices(self.viewer, Image)
        return [ComboBox(name="psf", label="PSF", choices=lambda w=None: [(GAUSSIAN, None), *layers(w)],
                         tooltip="An image layer holding the point spread function (2D), or a Gaussian"),
                FloatSpinBox(name="psf_sigma", label="PSF sigma (pixels)", min=0.1, max=50.0, step=0.1,
                             value=2.0, tooltip="Standard deviation of the Gaussian PSF, in pixels"),
                ComboBox(name="boundary", label="PSF boundary", choices=("reflect", "zero", "circular"),
                         tooltip="How the image continues past its edges in the blur model")]

    def extra_inputs(self, layer, block_index) -> dict:
        return {"inputs": {"psf": psf_of(self["psf"].value, self["psf_sigma"].value),
                           "boundary": self["boundary"].value}}


def psf_of(psf_layer, sigma: float):
    """The PSF as a 2D float32 array: the layer's data, or a Gaussian of ``sigma`` pixels."""
    from ..core.operators import gaussian_psf

    if psf_layer is None:
        return gaussian_psf(float(sigma)).numpy()
    data = np.asarray(psf_layer.data, dtype=np.float32)
    if psf_layer.rgb:
        data = data[..., 0]
    data = np.squeeze(data)
    if data.ndim != 2:
        raise ValueError(f"PSF layer {psf_layer.name!r} has shape {data.shape}; it must be one 2D image")
    return data
