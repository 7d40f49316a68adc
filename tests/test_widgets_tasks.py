"""Widgets beyond grey denoising: RGB, inpainting, the Deep Decoder, sample data, screenshots."""
from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_sample_data_loads_small_images(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-dip", "f16_noisy")
    viewer.open_sample("napari-dip", "mri_t1")
    f16, clean = viewer.layers["F16"], viewer.layers["F16 clean"]
    assert f16.rgb and f16.data.shape == (128, 128, 3) and f16.data.dtype == np.uint8
    noise = f16.data.astype(float) - clean.data
    assert 15 < noise.std() < 30  # sigma 25 before clipping
    mri = viewer.layers["T1 MRI"]
    assert mri.data.shape == (5, 235, 192) and tuple(mri.scale) == (0.8, 0.8, 0.8)
    assert str(mri.units[0]) == "millimeter"
    mri_clean = viewer.layers["T1 MRI clean"].data
    assert mri_clean.max() == 314 and np.array_equal(mri_clean, np.round(mri_clean))  # integer intensities


def test_rgb_stays_rgb(open_widget, run_job, screenshot):
    viewer, widget = open_widget("denoise", show=True)
    viewer.open_sample("napari-dip", "f16_noisy")
    widget.reset_choices()
    widget["image"].value = viewer.layers["F16"]
    widget["ground_truth"].value = viewer.layers["F16 clean"]
    widget["iterations"].value = 6
    widget["stopping"].value = "fixed"
    layer = run_job(widget)
    assert layer.rgb and layer.data.shape == (128, 128, 3) and layer.data.dtype == np.uint8
    assert layer.metadata["report"]["channel_axis"] == 2
    assert np.isfinite(layer.metadata["metrics"]["psnr_input"])
    assert screenshot(viewer, "test_denoise_rgb").shape[-1] in (3, 4)


def test_inpaint_fills_a_labels_mask(open_widget, run_job, em_crop):
    viewer, widget = open_widget("inpaint")
    src = viewer.add_image(em_crop[0], name="EM")
    holes = np.zeros((64, 64), np.uint8)
    holes[20:30, 10:50] = 1
    viewer.add_labels(holes, name="holes")
    widget.reset_choices()
    widget["image"].value = src
    widget["mask"].value = viewer.layers["holes"]
    widget["iterations"].value = 10
    widget["stopping"].value = "fixed"
    layer = run_job(widget)
    assert layer.name == "EM [DIP inpaint]" and layer.data.shape == (64, 64)
    assert layer.metadata["settings"]["mask"] == "holes"
    assert layer.data[20:30, 10:50].std() > 0.5  # the hole holds the network's output, not zeros
    np.testing.assert_array_equal(src.data, em_crop[0])


def test_inpaint_mask_from_shapes_and_errors(open_widget, notifications):
    from napari_dip._widgets.inpaint import known_pixels

    viewer, widget = open_widget("inpaint")
    src = viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="rgb", rgb=True)
    shapes = viewer.add_shapes([np.array([[10, 10], [10, 30], [20, 30], [20, 10]])], shape_type="rectangle")
    known = known_pixels(shapes, src)
    assert known.shape == (40, 50, 3)
    assert (~known[..., 0]).sum() == pytest.approx(11 * 21, abs=25)
    viewer.add_labels(np.zeros((40, 50), np.uint8), name="empty")
    widget.reset_choices()
    widget["image"].value = src
    widget["mask"].value = viewer.layers["empty"]
    assert widget.run() is None
    assert "marks no pixels" in str(notifications[-1].message)
    assert len(viewer.layers) == 3


def test_deep_decoder_ensemble_and_patches(open_widget, run_job, em_crop):
    viewer, widget = open_widget("decoder")
    src = viewer.add_image(em_crop[0], name="EM", scale=(2.0, 2.0), translate=(10.0, 20.0))
    widget.reset_choices()
    widget["image"].value = src
    for name, value in dict(channels=16, blocks=3, scale=4, code="blurred", patch_rows=2, patch_cols=2,
                            ensemble=2, iterations=12, add_members=True, add_spread=True,
                            add_patches=True).items():
        widget[name].value = value
    layer = run_job(widget)
    assert layer.name == "EM [Deep Decoder]" and layer.data.shape == (64, 64)
    names = [l.name for l in viewer.layers]
    assert names == ["EM", "EM [Deep Decoder]", "EM [Deep Decoder] spread (std)",
                     "EM [Deep Decoder] members", "EM [Deep Decoder] patch grid"]
    assert viewer.layers["EM [Deep Decoder] members"].data.shape == (2, 64, 64)
    spread = viewer.layers["EM [Deep Decoder] spread (std)"].data
    assert spread.shape == (64, 64) and spread.mean() > 0
    md = layer.metadata
    assert md["report"]["ensemble"] == 2 and md["report"]["patches"] == "2x2"
    assert md["report"]["iterations"] == 12 and "cv_percent" in md["report"]
    assert md["metrics"]["psnr"] > 5 and tuple(layer.scale) == (2.0, 2.0)
    assert len(widget.curve.points["loss"]) == 12
    # Members get their own slider, labelled "member"; nothing is labelled "patch".
    assert viewer.dims.axis_labels[0] == "member"
    assert all("patch" not in l.axis_labels for l in viewer.layers)


def test_deep_decoder_patches_sit_in_place_and_stability_is_shown(open_widget, run_job, em_crop):
    viewer, widget = open_widget("decoder")
    src = viewer.add_image(em_crop[0], name="EM", scale=(2.0, 2.0), translate=(10.0, 20.0))
    widget.reset_choices()
    widget["image"].value = src
    for name, value in dict(channels=16, blocks=3, scale=4, patch_rows=2, patch_cols=2, ensemble=2,
                            iterations=10, add_patches=True, add_spread=False).items():
        widget[name].value = value
    layer = run_job(widget)
    grid = viewer.layers["EM [Deep Decoder] patch grid"]
    assert grid.nshapes == 4
    # Patch (row 1, column 0) covers data pixels y 32..63, x 0..31 of the result, in world units.
    corners = [grid.data_to_world(c) for c in grid.data[2]]
    lo, hi = np.min(corners, axis=0), np.max(corners, axis=0)
    np.testing.assert_allclose(lo, layer.data_to_world((31.5, -0.5)))
    np.testing.assert_allclose(hi, layer.data_to_world((63.5, 31.5)))
    assert list(grid.features["label"])[2].startswith("patch 1,0 · ") and "dB" in grid.features["label"][2]
    # The stability is in the dock, not only in the metadata.
    report = layer.metadata["report"]
    text = widget.summary.text()
    assert widget.summary.isVisibleTo(widget)
    assert f"CV {report['cv_percent']:.2f}%" in text and "member PSNR" in text and "loss" in text
    for m in report["members"]:
        assert f"{m['psnr']:.2f}" in text and m["final_loss"] > 0
    assert ("UNSTABLE" in text) == (report["cv_percent"] > 5)
    assert "seams" in text


def test_deep_decoder_flags_an_unstable_ensemble():
    from napari_dip._widgets.decoder import stability_text

    report = {"cv_percent": 7.5, "unstable": True, "patches": "1x1",
              "members": [{"psnr": 20.0, "final_loss": 0.01}, {"psnr": 23.3, "final_loss": 0.02}]}
    text, flagged = stability_text(report)
    assert flagged and "CV 7.50%" in text and "UNSTABLE" in text and "20.00, 23.30 dB" in text
    text, flagged = stability_text({**report, "cv_percent": 1.0, "unstable": False})
    assert not flagged and "stable" in text


def test_deep_decoder_preview_reaches_the_layer(open_widget, em_crop, qtbot):
    viewer, widget = open_widget("decoder")
    src = viewer.add_image(em_crop[0], name="EM")
    widget.reset_choices()
    widget["image"].value = src
    for name, value in dict(channels=16, blocks=3, scale=4, ensemble=1, iterations=100_000,
                            preview_every=0.5).items():
        widget[name].value = value
    widget["run"].clicked.emit()
    qtbot.waitUntil(lambda: widget.runner.layer is not None, timeout=60_000)
    layer = widget.runner.layer
    assert layer.metadata["status"] == "running"  # a preview while fitting, not the end result
    first = layer.data.copy()
    assert not np.array_equal(first, src.data.astype(np.float32))  # the network's output, not the input
    qtbot.waitUntil(lambda: not np.array_equal(layer.data, first), timeout=30_000)  # and it updates
    widget["stop"].clicked.emit()
    qtbot.waitUntil(lambda: not widget.runner.running, timeout=30_000)
    assert layer.metadata["status"] == "stopped"


def test_deep_decoder_fills_every_slice_of_a_stack(open_widget, run_job, em_crop):
    viewer, widget = open_widget("decoder")
    src = viewer.add_image(em_crop[:2, :32, :32], name="EM stack")
    before = src.data.copy()
    widget.reset_choices()
    widget["image"].value = src
    widget["scope"].value = "all slices"
    for name, value in dict(channels=8, blocks=2, scale=4, ensemble=2, iterations=6,
                            add_members=True, add_spread=True).items():
        widget[name].value = value
    layer = run_job(widget)
    assert layer.data.shape == (2, 32, 32)
    assert all(float(np.abs(layer.data[i]).max()) > 0 for i in range(2))  # both slices restored
    assert [r["slice"] for r in layer.metadata["report"]["slices"]] == [0, 1]
    assert viewer.layers["EM stack [Deep Decoder] members"].data.shape == (2, 2, 32, 32)
    spread = viewer.layers["EM stack [Deep Decoder] spread (std)"].data
    assert spread.shape == (2, 32, 32) and spread[1].mean() > 0
    np.testing.assert_array_equal(src.data, before)


def test_architecture_and_auto_stopping_settings_reach_the_engine(open_widget, run_job, em_crop):
    viewer, widget = open_widget("denoise")
    src = viewer.add_image(em_crop[0, :32, :32], name="EM")
    widget.reset_choices()
    widget["image"].value = src
    assert widget["downsample"].value == "stride"
    widget["architecture"].value = "resunet"
    assert widget["downsample"].value == "max"  # the residual U-Net's preset values
    for name, value in dict(iterations=5, stop_window=20, stop_patience=40, stop_min_iterations=3).items():
        widget[name].value = value
    layer = run_job(widget)
    report = layer.metadata["report"]
    assert report["architecture"] == "resunet" and report["network"]["type"] == "ResUNetConfig"
    assert (report["stopping"]["window"], report["stopping"]["patience"],
            report["stopping"]["min_iterations"]) == (20, 40, 3)
    assert layer.data.shape == (32, 32)
