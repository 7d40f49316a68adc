"""The napari dock widgets: manifest, jobs through the widgets, results, stop, errors."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import WIDGETS

pytestmark = pytest.mark.gui


def test_manifest_validates_and_widgets_import_without_torch():
    npe2 = Path(sys.executable).with_name("npe2")
    done = subprocess.run([str(npe2), "validate", "napari-dip"], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "valid" in done.stdout
    code = ("import sys, napari_dip._widgets.denoise, napari_dip._widgets.superres, "
            "napari_dip._widgets.inpaint, napari_dip._widgets.decoder, napari_dip._sample_data; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("key", list(WIDGETS))
def test_each_widget_opens_from_the_manifest(open_widget, key):
    viewer, widget = open_widget(key)
    names = widget.control_names()
    for name in ("image", "preset", "iterations", "stopping", "seed", "device", "scope",
                 "ground_truth", "lr", "precision", "preview_every", "run", "stop"):
        assert name in names
    assert ("factor" in names) == (key == "superres")
    assert ("mask" in names) == (key == "inpaint")
    assert widget["device"].choices[:2] == ("auto", "cpu")
    assert widget["iterations"].value >= 1
    assert widget["stop"].enabled is False


@pytest.mark.slow
def test_denoise_job_adds_a_new_layer_and_keeps_the_input(open_widget, run_job, em_crop):
    viewer, widget = open_widget("denoise")
    rng = np.random.default_rng(0)
    clean = em_crop[0]
    noisy = np.clip(clean + rng.normal(0, 25, clean.shape), 0, 255).astype(np.uint8)
    src = viewer.add_image(noisy.copy(), name="EM", scale=(4.0, 4.0), translate=(3.0, 5.0))
    viewer.add_image(clean, name="EM clean")
    widget.reset_choices()
    widget["image"].value = src
    widget["ground_truth"].value = viewer.layers["EM clean"]
    widget["iterations"].value = 20
    widget["stopping"].value = "fixed"
    widget["preview_every"].value = 5
    layer = run_job(widget)

    assert layer.name == "EM [DIP denoise]"
    assert layer.data.shape == (64, 64) and layer.data.dtype == np.float32
    np.testing.assert_array_equal(src.data, noisy)  # the input is unchanged
    assert tuple(layer.scale) == (4.0, 4.0) and tuple(layer.translate) == (3.0, 5.0)
    md = layer.metadata
    assert md["status"] == "done" and md["partial"] is False and md["source"] == "EM"
    assert md["settings"]["iterations"] == 20 and md["settings"]["ground_truth"] == "EM clean"
    assert md["report"]["slices"][0]["iterations"] == 20 and md["seconds"] > 0
    assert 10 < md["metrics"]["psnr"] < 60 and 0 < md["metrics"]["ssim"] <= 1
    # The result is an image in the input's units, not an empty or saturated layer.
    assert 20 < layer.data.mean() < 235 and layer.data.std() > 5
    assert widget.progress.format().startswith("done in") and "PSNR" in widget.progress.format()
    points = widget.curve.points
    assert len(points["loss"]) == 20 and len(points["psnr"]) == 20
    assert points["loss"][-1][1] < points["loss"][0][1]

    widget["iterations"].value = 2
    second = run_job(widget)
    assert second.name == "EM [DIP denoise] (2)"
    assert {l.name for l in viewer.layers} == {"EM", "EM clean", "EM [DIP denoise]", "EM [DIP denoise] (2)"}


def test_superres_layer_is_aligned_in_world_coordinates(open_widget, run_job, em_crop):
    viewer, widget = open_widget("superres")
    src = viewer.add_image(em_crop[0, :32, :32], name="EM", scale=(2.0, 3.0), translate=(10.0, 20.0),
                           units=("nm", "nm"), axis_labels=("y", "x"))
    widget.reset_choices()
    widget["image"].value = src
    widget["factor"].value = 2
    widget["iterations"].value = 10
    widget["stopping"].value = "fixed"
    layer = run_job(widget)

    assert layer.name == "EM [DIP super-resolution]"
    assert layer.data.shape == (64, 64)
    np.testing.assert_allclose(layer.scale, (1.0, 1.5))
    np.testing.assert_allclose(layer.translate, (10.0 - 2.0 / 4, 20.0 - 3.0 / 4))
    assert tuple(str(u) for u in layer.units) == ("nanometer", "nanometer")
    assert tuple(layer.axis_labels) == ("y", "x")
    # Both layers cover the same world extent: outer pixel edges coincide.
    lo_in = np.asarray(src.data_to_world((-0.5, -0.5)))
    lo_out = np.asarray(layer.data_to_world((-0.5, -0.5)))
    hi_in = np.asarray(src.data_to_world((31.5, 31.5)))
    hi_out = np.asarray(layer.data_to_world((63.5, 63.5)))
    np.testing.assert_allclose(lo_in, lo_out)
    np.testing.assert_allclose(hi_in, hi_out)
    assert layer.metadata["settings"]["factor"] == 2 and layer.metadata["report"]["factor"] == 2
    assert layer.data.std() > 1


def test_all_slices_fill_one_stack_layer(open_widget, run_job, em_crop, qtbot):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop, name="stack", scale=(50.0, 4.0, 4.0))
    widget.reset_choices()
    widget["image"].value = src
    widget["scope"].value = "all slices"
    widget["iterations"].value = 8
    widget["stopping"].value = "fixed"
    widget["batch_size"].value = 1
    widget["preview_every"].value = 0  # the result layer appears with the first finished slice
    widget["run"].clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.layer is not None, timeout=60_000)
    layer = widget.runner.layer
    # The one result layer is there, full size, while the job runs; it is refreshed per slice.
    assert layer in viewer.layers and layer.data.shape == (3, 64, 64)
    assert layer.metadata["status"] == "running"
    refreshes = []
    layer.events.set_data.connect(refreshes.append)
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)

    assert layer.data.shape == (3, 64, 64)
    assert tuple(layer.scale) == (50.0, 4.0, 4.0)
    assert all(layer.data[i].std() > 1 for i in range(3))
    md = layer.metadata
    assert md["slices_done"] == [0, 1, 2] and md["partial"] is False
    assert [r["slice"] for r in md["report"]["slices"]] == [0, 1, 2]
    assert len(refreshes) >= 2  # the slices after the first


def test_current_slice_and_range_scopes(open_widget, run_job, em_crop):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop, name="stack", scale=(50.0, 4.0, 4.0), translate=(7.0, 0.0, 0.0))
    widget.reset_choices()
    widget["image"].value = src
    widget["iterations"].value = 3
    widget["stopping"].value = "fixed"
    viewer.dims.set_point(0, 7.0 + 2 * 50.0)  # world z of slice 2
    one = run_job(widget)
    assert one.data.shape == (1, 64, 64)
    np.testing.assert_allclose(one.translate, (107.0, 0.0, 0.0))
    assert one.metadata["region"] == "2:3, :, :"

    widget["scope"].value = "range"
    widget["first"].value, widget["last"].value = 1, 2
    assert widget["warm_start"].value  # the denoising preset warm-starts stacks
    widget["warm_start"].value = False
    two = run_job(widget)
    assert two.data.shape == (2, 64, 64)
    np.testing.assert_allclose(two.translate, (57.0, 0.0, 0.0))
    assert two.name == "stack [DIP denoise] (2)"
    assert two.metadata["report"]["batch_size"] == 2  # both slices fitted at once by default
    assert two.metadata["slices_done"] == [0, 1] and all(two.data[i].std() > 1 for i in range(2))

    widget["warm_start"].value = True  # the first slice cold, the second from its weights
    warm = run_job(widget)
    records = warm.metadata["report"]["slices"]
    assert [(r["batch"], r["warm_start"]) for r in records] == [(1, False), (1, True)]
    assert warm.metadata["slices_done"] == [0, 1] and all(warm.data[i].std() > 1 for i in range(2))


def test_stop_keeps_a_partial_result(open_widget, em_crop, qtbot):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop, name="stack")
    widget.reset_choices()
    widget["image"].value = src
    widget["scope"].value = "all slices"
    widget["iterations"].value = 5000
    widget["stopping"].value = "fixed"
    widget["preview_every"].value = 2
    widget["batch_size"].value = 1  # one slice after another
    widget["run"].clicked.emit()
    assert widget["run"].enabled is False and widget["stop"].enabled is True
    qtbot.waitUntil(lambda: len(widget.curve.points["loss"]) >= 6, timeout=60_000)
    widget["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30_000)

    layer = widget.runner.layer
    md = layer.metadata
    assert md["partial"] is True and md["status"] == "stopped"
    assert md["slices_done"] == [0]
    record = md["report"]["slices"][0]
    assert record["partial"] is True and 6 <= record["iterations"] < 5000
    assert layer.data[0].std() > 1 and not layer.data[1:].any()
    assert widget["run"].enabled is True and widget["stop"].enabled is False


def test_bad_inputs_show_an_error_and_lose_no_layer(open_widget, notifications, qtbot):
    viewer, widget = open_widget("denoise")
    bad = np.ones((64, 64), np.float32)
    bad[3, 4] = np.nan
    viewer.add_image(bad, name="with NaN")
    viewer.add_image(np.ones((4, 4), np.float32), name="tiny")
    widget.reset_choices()

    widget["image"].value = viewer.layers["tiny"]
    assert widget.run() is None  # refused before starting
    assert "at least 8x8" in str(notifications[-1].message)

    widget["image"].value = viewer.layers["with NaN"]
    widget["iterations"].value = 3
    widget["run"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=60_000)
    assert "NaN" in str(notifications[-1].message)
    assert [l.name for l in viewer.layers] == ["with NaN", "tiny"]
    assert np.isnan(viewer.layers["with NaN"].data[3, 4])
    assert widget["run"].enabled is True
