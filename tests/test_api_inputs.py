"""Bad option types and bad masks are refused before any compute, naming the option."""
import numpy as np
import pytest

import napari_dip

TINY = {"channels_down": (8, 8), "channels_up": (8, 8), "channels_skip": (2, 2), "code_channels": 4}
FAST = dict(network=TINY, iterations=25, stop="fixed")


@pytest.mark.parametrize("option, value", [
    ("iterations", "5"), ("iterations", 5.5), ("iterations", True), ("channel_axis", "-1"),
    ("channel_axis", 1.0), ("seed", "a"), ("seed", 1.5), ("lr", "0.01"), ("batch_size", "2"),
    ("parallel", 1.5), ("device", 0), ("warm_start", "yes"), ("network", "skip"), ("preset", 3),
])
def test_wrong_option_types_name_the_option(option, value):
    image = np.zeros((16, 16, 3), np.float32) if option == "channel_axis" else np.zeros((16, 16), np.float32)
    with pytest.raises((TypeError, ValueError), match=option):
        napari_dip.denoise(image, **{**FAST, option: value})


def test_wrong_option_types_name_the_option_in_every_function():
    image = np.zeros((16, 16), np.float32)
    with pytest.raises(TypeError, match="iterations"):
        napari_dip.inpaint(image, np.ones((16, 16)), iterations="5")
    with pytest.raises(TypeError, match="iterations"):
        napari_dip.super_resolve(image, 2, iterations=5.5)
    with pytest.raises(TypeError, match="seed"):
        napari_dip.deconvolve(image, psf_sigma=1.0, seed="a")
    with pytest.raises(TypeError, match="channel_axis"):
        napari_dip.restore(image, lambda x: x, channel_axis="-1")
    with pytest.raises(TypeError, match="operator"):
        napari_dip.restore(image, "blur")


def _damaged(shape=(16, 16)):
    yy, xx = np.mgrid[: shape[-2], : shape[-1]]
    return np.broadcast_to(0.5 + 0.3 * np.sin(xx / 3.0) * np.cos(yy / 4.0), shape).astype(np.float32)


@pytest.mark.parametrize("mask, match", [
    (np.zeros((16, 16)), "no pixel as known"),
    (np.full((16, 16), np.nan), "NaN"),
    (np.array([["a"] * 16] * 16), "unsupported dtype"),
    (np.ones((16, 16), dtype=object), "unsupported dtype"),
    (np.ones((8, 8)), "mask has shape"),
    (np.ones((16, 15)), "mask has shape"),
    (np.ma.masked_array(np.ones((16, 16)), mask=np.zeros((16, 16), bool)), "masked array"),
])
def test_bad_masks_are_refused(mask, match):
    with pytest.raises(ValueError, match=match):
        napari_dip.inpaint(_damaged(), mask, **FAST)


def test_a_stack_mask_with_an_empty_slice_names_the_slice():
    mask = np.ones((3, 16, 16))
    mask[1] = 0
    with pytest.raises(ValueError, match=r"no pixel as known in slice\(s\) \[1\]"):
        napari_dip.inpaint(_damaged((3, 16, 16)), mask, **FAST)


def test_a_masked_array_image_is_inpainted_where_it_is_masked():
    clean = _damaged()
    hole = np.zeros((16, 16), bool)
    hole[6:10, 6:10] = True
    damaged = np.ma.masked_array(np.where(hole, 0.0, clean), mask=hole)
    out = napari_dip.inpaint(damaged, network=TINY, iterations=150, stop="fixed")
    # honoured: the same as an explicit mask, and the hole is filled
    explicit = napari_dip.inpaint(np.where(hole, 0.0, clean), ~hole, network=TINY, iterations=150, stop="fixed")
    np.testing.assert_array_equal(out, explicit)
    assert np.abs(out[hole] - clean[hole]).mean() < np.abs(clean[hole]).mean() / 2
    # combined with a given mask: both sets of pixels are filled
    more = np.ones((16, 16), bool)
    more[0:3, 0:3] = False
    both = napari_dip.inpaint(damaged, more, network=TINY, iterations=20, stop="fixed")
    plain = napari_dip.inpaint(np.where(hole, 0.0, clean), more & ~hole, network=TINY, iterations=20, stop="fixed")
    np.testing.assert_array_equal(both, plain)


def test_a_masked_array_is_refused_where_its_mask_would_be_ignored():
    image = np.ma.masked_array(_damaged(), mask=np.zeros((16, 16), bool))
    with pytest.raises(ValueError, match="masked array.*denoising would ignore"):
        napari_dip.denoise(image, **FAST)
