"""The denoise widget's noise model: the control reaches the fit, the estimate is shown and
stored in the result layer's metadata."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_noise_control_estimates_shows_and_stores_the_model(open_widget, run_job):
    viewer, widget = open_widget("denoise")
    assert widget["noise"].value == "gaussian" and widget["noise_model"].value == ""
    yy, xx = np.mgrid[0:64, 0:64] / 64
    clean = 50 + 150 * xx + 30 * np.sin(6 * yy)
    noisy = np.clip(3.0 * np.random.default_rng(0).poisson(clean / 3.0), 0, 255).astype(np.uint8)
    src = viewer.add_image(noisy, name="fluo")
    widget.reset_choices()
    widget["image"].value = src
    widget["iterations"].value = 10
    widget["stopping"].value = "fixed"
    widget["noise"].value = "poisson-gaussian"
    layer = run_job(widget)
    (record,) = layer.metadata["report"]["slices"]
    assert record["noise"]["kind"] == "poisson-gaussian" and record["noise"]["a"] == pytest.approx(3.0, rel=0.35)
    assert layer.metadata["settings"]["noise"] == "poisson-gaussian"
    assert widget["noise_model"].value.startswith("poisson-gaussian: a=")
    np.testing.assert_array_equal(src.data, noisy)
