"""Public API on NumPy arrays: dtypes, channel axes, padding, stacks, reports, errors."""
import numpy as np
import pytest

import napari_dip
from napari_dip.api import SliceDone, SliceProgress, run
from napari_dip.core.fit import drain
from napari_dip.core.task import make_config

TINY = {"channels_down": (8, 8), "channels_up": (8, 8), "channels_skip": (2, 2), "code_channels": 4}
FAST = dict(network=TINY, iterations=25, stop="fixed")


def _image(shape=(24, 24), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    clean = 0.5 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 4.0)
    return np.broadcast_to(clean, shape).copy(), rng


def test_float_image_in_unit_range_gives_float32_of_same_shape():
    clean, rng = _image()
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).clip(0, 1)
    before = noisy.copy()
    out = napari_dip.denoise(noisy, **FAST)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert np.array_equal(noisy, before)  # the input is never modified


@pytest.mark.parametrize("dtype, lo, hi", [(np.uint8, 0, 255), (np.uint16, 1000, 3000), (np.float64, -5.0, 20.0)])
def test_output_stays_in_the_input_intensity_range(dtype, lo, hi):
    clean, _ = _image()
    image = (lo + (hi - lo) * clean).astype(dtype)
    out, report = napari_dip.denoise(image, return_report=True, **FAST)
    assert out.dtype == np.float32
    assert lo - 0.05 * (hi - lo) <= out.min() and out.max() <= hi + 0.05 * (hi - lo)
    assert abs(float(out.mean()) - float(image.mean())) < 0.15 * (hi - lo)
    assert report["intensity"]["scale"] > 0


@pytest.mark.parametrize("shape, axis", [((24, 20, 3), -1), ((3, 24, 20), 0), ((2, 24, 2, 20), 2)])
def test_channel_axis_anywhere(shape, axis):
    rng = np.random.default_rng(0)
    image = rng.random(shape).astype(np.float32)
    out, report = napari_dip.denoise(image, channel_axis=axis, return_report=True, **FAST)
    assert out.shape == image.shape
    n_slices = int(np.prod(shape)) // (shape[axis] * 24 * 20)
    assert len(report["slices"]) == n_slices


def test_sizes_the_network_cannot_take_are_padded_and_cropped_back():
    clean, rng = _image((21, 27))
    out, report = napari_dip.denoise(clean, return_report=True, **FAST)
    assert out.shape == (21, 27)
    assert report["fitted_size"] == [24, 28]


def test_stack_is_processed_slice_by_slice_and_events_are_reported():
    clean, rng = _image((3, 16, 16))
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    config = make_config("denoise", warm_start=False, **FAST)  # cold: every slice runs 25 iterations
    events = []
    out, report = drain(run(config, noisy, device="cpu"), events.append)
    done = [e for e in events if isinstance(e, SliceDone)]
    assert [e.slice for e in done] == [0, 1, 2]
    assert sum(len(e.slices) for e in events if isinstance(e, SliceProgress)) == 3 * 25
    assert [s["iterations"] for s in report["slices"]] == [25, 25, 25]
    assert out.shape == (3, 16, 16) and not np.allclose(out, noisy)


def test_selected_slices_only_and_the_rest_copied_through():
    clean, rng = _image((4, 16, 16))
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).astype(np.float32)
    out, report = drain(run(make_config("denoise", **FAST), noisy, slices=[2], device="cpu"))
    assert [s["slice"] for s in report["slices"]] == [2]
    np.testing.assert_allclose(out[[0, 1, 3]], noisy[[0, 1, 3]], atol=1e-6)
    assert not np.allclose(out[2], noisy[2])


def test_report_has_settings_metrics_and_parameters():
    clean, rng = _image((16, 16))
    noisy = (clean + 0.1 * rng.standard_normal(clean.shape)).clip(0, 1)
    out, report = napari_dip.denoise(noisy, ground_truth=clean, return_report=True, **FAST)
    for key in ("task", "preset", "stop", "seed", "fit", "network", "device", "torch", "parameters", "seconds"):
        assert key in report
    s = report["slices"][0]
    assert s["psnr_input"] == pytest.approx(10 * np.log10(1 / np.mean((noisy - clean) ** 2)), abs=0.01)
    assert set(s) >= {"iterations", "seconds", "final_loss", "stop_iteration", "psnr", "ssim", "ssim_input"}


def test_super_resolution_output_shape_and_bicubic_baseline():
    clean, _ = _image((32, 32))
    low = clean[::4, ::4]
    out, report = napari_dip.super_resolve(low, 4, ground_truth=clean, return_report=True, **FAST)
    assert out.shape == (32, 32)
    assert "psnr_input" in report["slices"][0]  # bicubic upsampling of the input


def test_inpainting_fills_the_masked_region():
    clean, _ = _image((16, 16))
    mask = np.ones((16, 16), bool)
    mask[6:10, 6:10] = False
    damaged = clean * mask
    out = napari_dip.inpaint(damaged, mask, network=TINY, iterations=150, stop="fixed")
    hole_err = np.abs(out[6:10, 6:10] - clean[6:10, 6:10]).mean()
    assert hole_err < np.abs(damaged[6:10, 6:10] - clean[6:10, 6:10]).mean() / 2


@pytest.mark.parametrize("image, kwargs, match", [
    (np.full((16, 16), np.nan), {}, "NaN"),
    (np.zeros(16), {}, "at least 2 dimensions"),
    (np.zeros((16, 16), complex), {}, "unsupported dtype"),
    (np.zeros((4, 16), np.float32), {}, "at least 8x8"),
    (np.zeros((16, 16, 3), np.float32), {}, "channel_axis=-1"),
    (np.zeros((16, 16)), {"preset": "slow"}, "unknown preset"),
    (np.zeros((16, 16)), {"stop": "early"}, "unknown stopping rule"),
    (np.zeros((16, 16)), {"stop": "oracle"}, "needs ground_truth"),
    (np.zeros((16, 16)), {"ground_truth": np.zeros((8, 8))}, "must match the restored image"),
    (np.zeros((16, 16, 3)), {"channel_axis": 3}, "out of range"),
    (np.zeros((16, 16)), {"network": {"depth": 3}}, "unknown network option"),
])
def test_bad_input_names_the_problem(image, kwargs, match):
    with pytest.raises(ValueError, match=match):
        napari_dip.denoise(image, **{**FAST, **kwargs})


def test_bad_factor_and_mask():
    with pytest.raises(ValueError, match="factor must be an integer"):
        napari_dip.super_resolve(np.zeros((16, 16)), 64)
    with pytest.raises(ValueError, match="mask has shape"):
        napari_dip.inpaint(np.zeros((16, 16)), np.ones((8, 8)), **FAST)
