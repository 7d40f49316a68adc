"""The deconvolution dock widget: the PSF from a layer or a sigma, through the one engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.gui

TITLE = "Deconvolve"


def _open(make_napari_viewer):
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget("napari-dip", TITLE)
    return viewer, widget


def test_deconvolve_with_a_psf_layer_equals_a_sigma_psf(make_napari_viewer, run_job, em_crop):
    from napari_dip.core.operators import gaussian_psf

    viewer, widget = _open(make_napari_viewer)
    src = viewer.add_image(em_crop[0], name="EM")
    viewer.add_image(gaussian_psf(1.5).numpy(), name="bead")
    widget.reset_choices()
    widget["image"].value = src
    widget["psf"].value = viewer.layers["bead"]
    widget["iterations"].value = 8
    widget["stopping"].value = "fixed"
    widget["precision"].value = "fp32"
    from_layer = run_job(widget)
    assert from_layer.name == "EM [DIP deconvolve]" and from_layer.data.shape == (64, 64)
    assert from_layer.metadata["report"]["task"] == "deconvolve"
    np.testing.assert_array_equal(src.data, em_crop[0])  # the input layer is untouched
    widget["psf"].value = None  # the Gaussian of the sigma field
    widget["psf_sigma"].value = 1.5
    from_sigma = run_job(widget)
    np.testing.assert_allclose(from_sigma.data, from_layer.data, atol=1e-3)
    widget["psf_sigma"].value = 3.0  # another PSF, another result
    assert not np.allclose(run_job(widget).data, from_layer.data, atol=1e-3)


def test_a_psf_layer_that_is_not_2d_is_refused(make_napari_viewer, notifications, em_crop):
    viewer, widget = _open(make_napari_viewer)
    viewer.add_image(em_crop[0], name="EM")
    viewer.add_image(np.ones((2, 5, 5), np.float32), name="stack psf")
    widget.reset_choices()
    widget["image"].value = viewer.layers["EM"]
    widget["psf"].value = viewer.layers["stack psf"]
    assert widget.run() is None
    assert any("must be one 2D image" in str(n.message) for n in notifications)
