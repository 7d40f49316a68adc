"""What a job costs, as the widget shows it: a measured estimate before Run, an ETA from the
rate of the latest iterations."""
from __future__ import annotations

import re
from types import SimpleNamespace

import numpy as np
import pytest

from napari_dip._widgets.cost import Pace, clock, price

pytestmark = pytest.mark.gui


def test_the_estimate_times_the_job_run_would_start_and_adds_nothing(open_widget, em_crop, qtbot):
    viewer, widget = open_widget("denoise")
    stack = em_crop.copy()
    src = viewer.add_image(stack, name="stack")
    widget.reset_choices()
    widget["image"].value = src
    widget["scope"].value = "all slices"
    widget["iterations"].value = 400
    widget["batch_size"].value = 1
    widget["warm_start"].value = False
    worker = widget.estimate()
    assert not widget["estimate"].enabled  # one estimate at a time
    qtbot.waitUntil(lambda: widget["estimate"].enabled, timeout=60_000)
    text = widget.summary.text()
    match = re.search(r"measured ([0-9.]+) s per iteration: at most (\S+) for 3 slices x 400 iterations", text)
    assert match, text
    seconds_per_iteration = float(match.group(1))
    assert 0 < seconds_per_iteration < 5
    # The price is every slice to the cap at the measured rate (the label rounds the rate).
    assert widget.last_estimate == pytest.approx(3 * 400 * seconds_per_iteration, rel=0.02, abs=3 * 400 * 0.006)
    assert clock(widget.last_estimate) == match.group(2)
    assert "automatic stop usually ends sooner" in text
    assert [layer.name for layer in viewer.layers] == ["stack"] and widget.runner.state == "idle"
    np.testing.assert_array_equal(src.data, em_crop)  # only read
    assert worker is not None


def test_the_estimate_refuses_what_run_refuses(open_widget):
    viewer, widget = open_widget("denoise")
    widget.reset_choices()
    assert widget.estimate() is None
    assert "not estimated: choose an image layer" in widget.progress.format()


def test_price_is_per_slice_iteration_and_says_batches():
    event = SimpleNamespace(slice=0, slices=(0, 1), count=6, progress=SimpleNamespace(total=1000))
    seconds, line = price(0.5, event, "fixed")
    assert seconds == pytest.approx(0.5 / 2 * 6 * 1000)  # 0.25 s per slice-iteration
    assert line == "measured 0.50 s per iteration (2 slices at once): at most 25:00 for 6 slices x 1000 iterations"
    assert clock(4000) == "1:06:40"


def test_pace_uses_the_latest_iterations_not_the_start_up():
    pace = Pace(events=3)
    assert pace.remaining(10.0, 1, 101) is None  # one iteration seen: no rate yet
    # After a 10 s start-up the run does 1 iteration per second.
    for i, now in enumerate((11.0, 12.0, 13.0), start=2):
        left = pace.remaining(now, i, 101)
    assert left == pytest.approx(101 - 4)  # the rate of the last three events: 1 iteration/s
