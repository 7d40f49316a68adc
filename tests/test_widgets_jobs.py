"""Jobs as a user meets them: what is on screen while fitting, docks and layers closed mid-run,
two jobs at once, the viewer closed mid-run, results that are not numbers."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import WIDGETS

pytestmark = pytest.mark.gui

LONG = 100_000  # iterations: the job runs until the test stops it


def _long_denoise(widget, layer, **values):
    widget.reset_choices()
    widget["image"].value = layer
    widget["stopping"].value = "fixed"
    widget["iterations"].value = LONG
    for name, value in values.items():
        widget[name].value = value


def test_input_stays_visible_until_the_first_preview(open_widget, em_crop, qtbot):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop, name="stack")
    _long_denoise(widget, src, scope="all slices", batch_size=1, warm_start=False, preview_every=1.0)
    start = time.perf_counter()
    widget["run"].clicked.emit()
    # No black layer on top of the input: nothing is added before there is something to show.
    assert widget.runner.layer is None and [l.name for l in viewer.layers] == ["stack"]
    assert widget.runner.state == "running"
    qtbot.waitUntil(lambda: widget.runner.layer is not None, timeout=60_000)
    seconds = time.perf_counter() - start
    layer = widget.runner.layer
    assert layer.metadata["status"] == "running"
    assert seconds < 30  # a preview after about a second, not after N iterations
    assert not np.array_equal(layer.data[0], em_crop[0].astype(np.float32))  # slice 0: the network's output
    # Slices the job has not reached show the input, not zeros.
    np.testing.assert_array_equal(layer.data[2], em_crop[2].astype(np.float32))
    # Then previews keep coming by time.
    first = layer.data[0].copy()
    qtbot.waitUntil(lambda: not np.array_equal(layer.data[0], first), timeout=30_000)
    widget["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30_000)
    assert layer.metadata["status"] == "stopped" and not layer.data[1:].any()  # unreached: empty


def test_closing_the_dock_leaves_a_job_the_reopened_dock_stops(open_widget, em_crop, qtbot):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop[0], name="EM")
    _long_denoise(widget, src, preview_every=0.5)
    widget["run"].clicked.emit()
    qtbot.waitUntil(lambda: len(widget.curve.points["loss"]) >= 2, timeout=60_000)
    viewer.window.remove_dock_widget(widget)
    qtbot.wait(300)
    _, again = open_widget("denoise", viewer=viewer)
    assert again is not widget
    # The new dock follows the running job: its state, progress and curve, and it can stop it.
    assert again.runner.running and again.runner.state == "running"
    assert again["stop"].enabled and not again["run"].enabled
    qtbot.waitUntil(lambda: "iteration" in again.progress.format(), timeout=10_000)
    assert len(again.curve.points["loss"]) >= 2
    again["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not again.runner.running, timeout=30_000)
    assert again.runner.state == "stopped" and again["run"].enabled
    layer = viewer.layers["EM [DIP denoise]"]
    assert layer.metadata["status"] == "stopped" and layer.metadata["partial"] is True


def test_deleting_the_result_or_input_layer_mid_run_keeps_the_result(open_widget, em_crop, qtbot,
                                                                      notifications):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop[0], name="EM")
    _long_denoise(widget, src, preview_every=0.3)
    widget["run"].clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.layer is not None, timeout=60_000)
    viewer.layers.remove(widget.runner.layer)
    viewer.layers.remove(src)
    assert len(viewer.layers) == 0
    qtbot.waitUntil(lambda: len(widget.curve.points["loss"]) >= 3, timeout=60_000)
    assert widget.runner.state == "running" and len(viewer.layers) == 0  # not put back mid-run
    widget["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert widget.runner.state == "stopped"
    layer = viewer.layers["EM [DIP denoise]"]  # added again, whole
    assert layer is widget.runner.layer and layer.metadata["status"] == "stopped"
    assert layer.data.shape == (64, 64) and layer.data.std() > 1
    messages = " | ".join(str(n.message) for n in notifications)
    assert "result layer was deleted" in messages and "'EM [DIP denoise]'" in messages
    assert "input layer 'EM' was removed" in messages


def test_two_jobs_at_once_are_queued(open_widget, em_crop, qtbot, notifications):
    viewer, first = open_widget("denoise")
    src = viewer.add_image(em_crop[0, :32, :32], name="EM")
    _long_denoise(first, src, preview_every=0)
    _, second = open_widget("superres", viewer=viewer)
    second.reset_choices()
    second["image"].value = src
    second["factor"].value = 2
    second["iterations"].value = 3
    second["stopping"].value = "fixed"
    first["run"].clicked.emit()
    second["run"].clicked.emit()
    assert first.runner.state == "running" and second.runner.state == "queued"
    assert second.progress.format().startswith("queued: starts when DIP denoise on 'EM' ends")
    assert "queued" in str(notifications[-1].message)
    assert second["stop"].enabled and not second["run"].enabled
    qtbot.wait(500)
    assert second.runner.state == "queued" and second.runner.layer is None
    first["stop"].clicked.emit()
    qtbot.waitUntil(lambda: second.runner.state == "done", timeout=120_000)
    assert first.runner.state == "stopped"
    assert second.runner.layer.data.shape == (64, 64)


def test_stopping_a_queued_job_removes_it(open_widget, em_crop, qtbot):
    viewer, first = open_widget("denoise")
    src = viewer.add_image(em_crop[0, :32, :32], name="EM")
    _long_denoise(first, src, preview_every=0)
    _, second = open_widget("inpaint", viewer=viewer)
    holes = np.zeros((32, 32), np.uint8)
    holes[4:8] = 1
    viewer.add_labels(holes, name="holes")
    second.reset_choices()
    second["image"].value, second["mask"].value = src, viewer.layers["holes"]
    first["run"].clicked.emit()
    second["run"].clicked.emit()
    second["stop"].clicked.emit()
    assert second.runner.state == "stopped" and second["run"].enabled
    first["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not first.runner.running, timeout=30_000)
    qtbot.wait(300)
    assert second.runner.layer is None and "EM [DIP inpaint]" not in viewer.layers


def test_a_result_with_nan_is_refused(open_widget, em_crop, qtbot, notifications):
    from napari_dip.api import SliceDone

    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop[0, :32, :32].astype(np.float64), name="EM")
    widget.reset_choices()
    widget["image"].value = src

    def diverging(image, channel_axis, truth, device, extra):  # a fit whose output turned NaN
        def events(out, cancel):
            out[...] = np.nan
            yield SliceDone(0, 0, 1, out, {"slice": 0, "iterations": 1})
            return out, {"slices": [{"slice": 0}], "partial": False, "seconds": 0.1}
        return events

    widget.events = diverging
    widget["run"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30_000)
    assert widget.runner.state == "failed"
    assert [l.name for l in viewer.layers] == ["EM"]  # no NaN layer marked done
    message = str(notifications[-1].message)
    assert "NaN or infinite" in message and "'EM'" in message and "learning rate" in message


def test_huge_and_nan_inputs_are_refused_in_napari_terms(open_widget, notifications):
    viewer, widget = open_widget("denoise")
    rng = np.random.default_rng(0)
    viewer.add_image(rng.random((32, 32)) * 1e300, name="huge")
    nan = rng.random((32, 32)).astype(np.float32)
    nan[3, 4] = np.nan
    viewer.add_image(nan, name="holey")
    viewer.add_image(np.zeros((4, 4, 3), np.uint8), name="tiny", rgb=False)
    widget.reset_choices()
    widget["image"].value = viewer.layers["huge"]
    assert widget.run() is None
    message = str(notifications[-1].message)
    assert "'huge'" in message and "float32" in message and "rescale" in message
    widget["image"].value = viewer.layers["holey"]
    assert widget.run() is None
    message = str(notifications[-1].message)
    assert "'holey'" in message and "1 NaN" in message and "3, 4" in message and "Inpaint" in message
    widget["image"].value = viewer.layers["tiny"]
    assert widget.run() is None
    message = str(notifications[-1].message)
    assert "'tiny'" in message and "at least 8x8" in message and "RGB" in message
    for n in notifications:
        assert "nan_to_num" not in str(n.message) and "channel_axis" not in str(n.message)
    assert len(viewer.layers) == 3


CLOSE_SCRIPT = textwrap.dedent("""
    import sys, threading
    import numpy as np, napari, torch
    from qtpy.QtWidgets import QApplication
    torch.set_num_threads(1)
    viewer = napari.Viewer(show=False)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-dip", "{name}")
    viewer.add_image(np.random.default_rng(0).random((32, 32)).astype(np.float32), name="x")
    widget.reset_choices()
    widget["iterations"].value = 100000
    widget["stopping"].value = "fixed"
    widget["preview_every"].value = 0.2
    widget["run"].clicked.emit()
    app = QApplication.instance()
    while len(widget.curve.points["loss"]) < 3:
        app.processEvents()
    viewer.close()
    app.processEvents()
    jobs = [t for t in threading.enumerate() if t.name.startswith("napari-dip")]
    print("job threads left:", len(jobs), flush=True)
""")


@pytest.mark.parametrize("close_dock", [False, True], ids=["viewer", "dock-then-viewer"])
def test_closing_the_viewer_mid_job_ends_it_and_the_process_cleanly(tmp_path, close_dock):
    close = ("app.processEvents(); viewer.window.remove_dock_widget(widget)" if close_dock else "")
    script = CLOSE_SCRIPT.format(name=WIDGETS["denoise"])
    if close_dock:  # the dock goes first, then the viewer, with the job still running
        script = script.replace("viewer.close()", f"{close}\nviewer.close()")
    path = tmp_path / "close.py"
    path.write_text(script)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "job threads left: 0" in done.stdout
    assert "RuntimeError" not in done.stderr and "Traceback" not in done.stderr, done.stderr[-3000:]


def test_job_states_are_explicit_and_layer_data_is_written_on_the_main_thread(open_widget, em_crop, qtbot,
                                                                              monkeypatch):
    import threading

    from napari.layers import Image

    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop[0, :32, :32], name="EM")
    _long_denoise(widget, src, preview_every=0.2)
    writers = []
    refresh = Image.refresh
    monkeypatch.setattr(Image, "refresh", lambda self, *a, **k: (writers.append(threading.current_thread()),
                                                                 refresh(self, *a, **k))[1])
    assert widget.runner.state == "idle"
    widget["run"].clicked.emit()
    run = widget.runner.run
    states = [run.state]
    run.changed.connect(lambda: states.append(run.state) if states[-1] != run.state else None)
    qtbot.waitUntil(lambda: widget.runner.layer is not None and len(writers) >= 2, timeout=60_000)
    assert widget.runner.layer.data is not run._buffer  # the job's thread has its own buffer
    widget["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30_000)
    assert states == ["running", "stopping", "stopped"]
    assert set(writers) == {threading.main_thread()}
