"""The denoise widget's noise model: the control reaches the fit, the estimate is shown and
stored in the result layer's metadata."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_noise_control_estimates_shows_and_stores_the_model(open_widget, run_job):
    viewer, widget = open_widget("denoise")
    assert widget["noise"].value == "auto" and widget["noise_model"].value.startswith("estimated from the image")
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


def _painted(widget, colour: str) -> int:
    """How many pixels of the widget's rendering are (nearly) ``colour``."""
    from qtpy.QtGui import QColor

    image = widget.grab().toImage()
    want = QColor(colour)
    near = 0
    for y in range(image.height()):
        for x in range(image.width()):
            c = image.pixelColor(x, y)
            near += abs(c.red() - want.red()) + abs(c.green() - want.green()) + abs(c.blue() - want.blue()) < 40
    return near


def _fluo(seed=0):
    yy, xx = np.mgrid[0:64, 0:64] / 64
    clean = 50 + 150 * xx + 30 * np.sin(6 * yy)
    return np.clip(3.0 * np.random.default_rng(seed).poisson(clean / 3.0), 0, 255).astype(np.uint8)


def test_noise_plot_draws_the_level_statistics_and_the_fitted_line(open_widget, run_job):
    from napari_dip._widgets.curve import NOISE_COLOURS
    from napari_dip.core.noise_estimate import estimate_noise

    viewer, widget = open_widget("denoise", show=True)
    plot = widget.noise_plot
    assert not plot.isVisible()  # nothing estimated yet
    noisy = _fluo()
    widget.reset_choices()
    widget["image"].value = viewer.add_image(noisy, name="fluo")
    widget["iterations"].value = 5
    widget["stopping"].value = "fixed"
    widget["noise"].value = "poisson-gaussian"
    layer = run_job(widget)
    (record,) = layer.metadata["report"]["slices"]
    estimate = estimate_noise(noisy.astype(np.float64), "poisson-gaussian")
    assert plot.isVisible() and len(plot.points) == len(estimate.means) >= 2
    np.testing.assert_allclose(np.array(plot.points), np.stack([estimate.means, estimate.variances], 1), rtol=1e-5)
    a, b = record["noise"]["a"], record["noise"]["b"]
    xs, vs = np.array(plot.curve).T
    assert xs.min() == pytest.approx(estimate.means.min()) and xs.max() == pytest.approx(estimate.means.max())
    np.testing.assert_allclose(vs, a * xs + b, rtol=1e-9)
    assert a == pytest.approx(3.0, rel=0.35) and plot.title.startswith(f"var = {a:.3g} mean")
    assert _painted(plot, NOISE_COLOURS["points"]) > 5 * len(plot.points)  # the dots are drawn
    assert _painted(plot, NOISE_COLOURS["curve"]) > plot.width() // 2      # and the line across


def test_classical_method_in_the_denoise_widget_gives_the_baseline_output(open_widget, run_job):
    from napari_dip.baselines import denoise_baseline

    viewer, widget = open_widget("denoise")
    noisy = _fluo(1)
    src = viewer.add_image(noisy, name="fluo")
    widget.reset_choices()
    widget["image"].value = src
    widget["method"].value = "nlm"
    widget["noise"].value = "auto"
    layer = run_job(widget)
    assert layer.name == "fluo [NLM]" and layer.metadata["settings"]["method"] == "nlm"
    expected, report = denoise_baseline(noisy, "nlm", noise="auto")
    np.testing.assert_array_equal(layer.data, expected)
    assert layer.metadata["report"]["slices"][0]["noise"] == report["slices"][0]["noise"]
    assert not widget.noise_plot.isHidden() and widget["noise_model"].value.startswith("poisson: a=")
    np.testing.assert_array_equal(src.data, _fluo(1))
