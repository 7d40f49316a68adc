"""The forms: tooltips, typed values that stay, short dock titles, inpainting masks."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import WIDGETS

pytestmark = pytest.mark.gui


@pytest.mark.parametrize("key", list(WIDGETS))
def test_every_control_has_a_tooltip(open_widget, key):
    _, widget = open_widget(key)
    missing = [name for name in widget.control_names() if not (widget[name].tooltip or "").strip()]
    assert missing == []
    assert len(widget.control_names()) > 15


@pytest.mark.parametrize("key", list(WIDGETS))
def test_dock_titles_are_short_and_not_cut_off(open_widget, key, qtbot):
    viewer, widget = open_widget(key, show=True)
    dock, _ = viewer.window.add_plugin_dock_widget("napari-dip", WIDGETS[key])  # the open one
    assert dock.name == f"{WIDGETS[key]} (napari-dip)" and len(dock.name) <= 30
    qtbot.waitUntil(dock.isVisible)
    assert dock.fontMetrics().horizontalAdvance(dock.name) + 60 < dock.width()


def test_changing_the_factor_keeps_the_typed_values(open_widget):
    _, widget = open_widget("superres")
    assert widget["factor"].value == 4 and widget["iterations"].value == 1000
    widget["iterations"].value = 123
    widget["lr"].value = 0.005
    widget["factor"].value = 8
    assert widget["iterations"].value == 123 and widget["lr"].value == pytest.approx(0.005)
    assert widget["code_noise"].value == pytest.approx(0.05)  # untouched: follows the factor's preset
    _, fresh = open_widget("superres")
    fresh["factor"].value = 8
    assert fresh["iterations"].value == 2000  # untouched: the preset's value for x8


def _inpaint_form(open_widget, holes):
    viewer, widget = open_widget("inpaint")
    rng = np.random.default_rng(1)
    image = (rng.random((32, 32)) * 200 + 20).astype(np.float32)
    src = viewer.add_image(image, name="EM")
    viewer.add_labels(holes, name="holes")
    widget.reset_choices()
    widget["image"].value = src
    widget["mask"].value = viewer.layers["holes"]
    widget["iterations"].value = 8
    widget["stopping"].value = "fixed"
    return viewer, widget, image


def test_inpaint_warns_about_a_mostly_unknown_mask_and_offers_to_invert_it(open_widget, qtbot, notifications):
    painted_known = np.zeros((32, 32), np.uint8)
    painted_known[:, 6:] = 1  # the user painted the known pixels: 81% "to fill"
    viewer, widget, image = _inpaint_form(open_widget, painted_known)
    assert widget.run() is None  # not started: the user is asked first
    note = notifications[-1]
    assert "81%" in str(note.message) and "invert mask" in str(note.message)
    assert [name for name, _ in note.actions] == ["Invert mask and run", "Run anyway"]
    assert len(viewer.layers) == 2
    dict(note.actions)["Invert mask and run"](None)
    assert widget["invert_mask"].value is True
    qtbot.waitUntil(lambda: widget.runner.state == "done", timeout=60_000)
    layer = widget.runner.layer
    # Only the 6 unpainted columns were filled; the painted (known) ones are the input's.
    np.testing.assert_array_equal(layer.data[:, 6:], image[:, 6:])
    assert not np.array_equal(layer.data[:, :6], image[:, :6])
    assert layer.metadata["settings"]["invert_mask"] is True


def test_inpaint_keeps_known_pixels_unless_raw_output_is_asked(open_widget, run_job):
    holes = np.zeros((32, 32), np.uint8)
    holes[10:16, 4:28] = 1
    viewer, widget, image = _inpaint_form(open_widget, holes)
    kept = run_job(widget)
    known = holes == 0
    np.testing.assert_array_equal(kept.data[known], image[known])  # exactly the input
    assert not np.array_equal(kept.data[~known], image[~known])    # the holes are filled
    widget["keep_known"].value = False
    raw = run_job(widget)
    assert np.abs(raw.data[known] - image[known]).mean() > 0.1   # the network's own output
    np.testing.assert_allclose(raw.data[~known], kept.data[~known], atol=1e-4)  # same fit in the holes
