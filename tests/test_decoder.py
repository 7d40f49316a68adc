"""fit_decoder: tasks, patch grids, ensembles, stability figures, reports."""
from __future__ import annotations

import numpy as np
import pytest

from napari_dip import fit_decoder
from napari_dip.core.metrics import mean_pairwise_psnr, stability
from napari_dip.decoder import parse_grid

SMALL = dict(channels=16, blocks=3, scale=4, device="cpu")


def phantom(h=32, w=40):
    y, x = np.mgrid[0:h, 0:w]
    img = 0.5 + 0.3 * np.sin(x / 4.0) * np.cos(y / 5.0)
    img[8:20, 10:22] += 0.15
    return np.clip(img, 0, 1).astype(np.float32)


def psnr(a, b):
    return float(10 * np.log10(1 / np.mean((np.asarray(a, np.float64) - b) ** 2)))


def test_fit_task_learns_the_image_and_reports_compression():
    img = phantom()
    few = fit_decoder(img, iterations=5, **SMALL)
    many = fit_decoder(img, iterations=150, **SMALL)
    assert many.output.shape == img.shape and many.output.dtype == np.float32
    assert psnr(many.output, img) > psnr(few.output, img) + 5
    r = many.report
    assert r["members"][0]["psnr"] == pytest.approx(psnr(many.output, img), abs=0.01)
    assert r["parameters"] == 16 * 16 * 3 + 2 * 16 * 3 + 16  # k^2 l + 2 k l + k (one output channel)
    assert r["params_per_pixel"] == pytest.approx(r["parameters"] / (32 * 40))
    assert r["iterations"] == 150 and r["stop"] == "fixed" and r["seconds_per_iteration"] > 0
    assert "cv_percent" not in r and np.all(many.std == 0)


def test_uint16_input_comes_back_in_its_units():
    img = (phantom() * 4000 + 100).astype(np.uint16)
    out = fit_decoder(img, iterations=60, **SMALL).output
    assert out.shape == img.shape and 80 < out.min() and out.max() < 4200
    assert psnr(out / 4000.0, img / 4000.0) > 20


def test_patch_grid_outputs_stitching_and_per_patch_metrics():
    img = phantom(36, 44)
    res = fit_decoder(img, patches="2x3", iterations=100, **SMALL)
    assert res.output.shape == img.shape
    assert len(res.patches) == 6 and res.patches[0].shape == (20, 16)  # ceil(36/2)=18 -> 20, ceil(44/3)=15 -> 16
    np.testing.assert_allclose(res.patches[4][: 36 - 20, :], res.output[20:, 16:32], atol=1e-6)
    rows = res.report["patch_metrics"]
    assert [(p["row"], p["col"]) for p in rows] == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (1, 2)]
    assert rows[5]["height"] == 16 and rows[5]["width"] == 44 - 32
    for p in rows:
        assert p["psnr"] > 20 and p["ms_ssim"] is None and "MS-SSIM" in p["notes"][0]
    assert res.report["parameters"] * 6 > 0 and res.report["patch_size"] == [20, 16]


def test_ensemble_members_are_independent_and_the_cv_is_reported():
    img = phantom()
    res = fit_decoder(img, ensemble=3, iterations=80, seed=5, **SMALL)
    assert res.members.shape == (3, 32, 40)
    assert not np.allclose(res.members[0], res.members[1])
    np.testing.assert_allclose(res.output, res.members.mean(0), atol=1e-6)
    np.testing.assert_allclose(res.std, res.members.std(0), atol=1e-6)
    r = res.report
    assert [m["seed"] for m in r["members"]] == [5, 6, 7]
    psnrs = [m["psnr"] for m in r["members"]]
    assert r["cv_percent"] == pytest.approx(100 * np.std(psnrs) / np.mean(psnrs))
    assert r["unstable"] == (r["cv_percent"] > 5)
    # member m of a batch equals a single fit with seed 5 + m
    alone = fit_decoder(img, ensemble=1, iterations=80, seed=6, **SMALL)
    np.testing.assert_allclose(alone.output, res.members[1], atol=2e-3)


def test_stability_flag_and_pairwise_psnr():
    assert stability([30.0, 30.0, 30.0]) == {"cv_percent": 0.0, "unstable": False}
    s = stability([20.0, 30.0])
    assert s["cv_percent"] == pytest.approx(20.0) and s["unstable"]
    a = np.zeros((3, 1, 4, 4), np.float32)
    a[1] += 0.1
    a[2] += 0.2
    expected = np.mean([20.0, 10 * np.log10(1 / 0.04), 20.0])
    assert mean_pairwise_psnr(a) == pytest.approx(expected, abs=1e-3)


def test_denoise_without_ground_truth_gives_spread_and_pairwise_psnr():
    rng = np.random.default_rng(0)
    clean = phantom()
    noisy = np.clip(clean + rng.normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    res = fit_decoder(noisy, task="denoise", ensemble=2, iterations=100, **SMALL)
    r = res.report
    assert "cv_percent" not in r and "psnr" not in r["members"][0]
    assert r["mean_pairwise_psnr"] > 20 and r["spread"] == pytest.approx(float(res.std.mean()), rel=1e-4)
    with_gt = fit_decoder(noisy, task="denoise", iterations=100, ground_truth=clean, **SMALL)
    assert with_gt.report["members"][0]["psnr"] > psnr(noisy, clean) + 2


def test_superres_and_inpaint_use_the_dip_operators():
    img = phantom(32, 32)
    low = img.reshape(16, 2, 16, 2).mean((1, 3))
    sr = fit_decoder(low, task="superres", factor=2, iterations=100, ground_truth=img, **SMALL)
    assert sr.output.shape == (32, 32) and sr.report["factor"] == 2
    assert sr.report["members"][0]["psnr"] > 20
    mask = np.ones((32, 32), bool)
    mask[12:18, 12:18] = False
    holed = np.where(mask, img, 0).astype(np.float32)
    ip = fit_decoder(holed, task="inpaint", mask=mask, iterations=150, ground_truth=img, **SMALL)
    hole = ~mask
    assert psnr(ip.output[hole], img[hole]) > psnr(holed[hole], img[hole]) + 5


def test_colour_images_and_3d_perlin_codes():
    img = np.stack([phantom(), phantom()[::-1], phantom()[:, ::-1]], axis=-1)
    res = fit_decoder(img, channel_axis=-1, code="perlin", code_3d=True, iterations=60, **SMALL)
    assert res.output.shape == img.shape and res.report["code_kind"] == "perlin-3d"
    assert res.report["parameters"] == 16 * 16 * 3 + 2 * 16 * 3 + 16 * 3


@pytest.mark.parametrize("kwargs,match", [
    ({"task": "deblur"}, "unknown task"), ({"ensemble": 0}, "ensemble"), ({"patches": "2by2"}, "RxC"),
    ({"code": "meshgrid"}, "decoder code"), ({"patches": "8x8", "scale": 8}, "outside"),
    ({"task": "inpaint"}, "mask"), ({"stop": "oracle", "task": "denoise"}, "ground_truth")])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        fit_decoder(phantom(), iterations=1, **{**SMALL, **kwargs})


def test_stacks_are_refused_with_a_hint():
    with pytest.raises(ValueError, match="one 2D image"):
        fit_decoder(np.zeros((2, 16, 16), np.float32), iterations=1, **SMALL)
    assert parse_grid("4x5") == (4, 5) and parse_grid(3) == (3, 3)


def _band_psnr(a, b, lines, axis, band=3):
    mask = np.zeros(a.shape, bool)
    for v in lines:
        if axis == 0:
            mask[max(0, v - band):v + band] = True
        else:
            mask[:, max(0, v - band):v + band] = True
    return psnr(a[mask], b[mask])


def test_tiles_fit_like_the_whole_image_and_blend_without_seams():
    img = phantom(64, 80)
    whole = fit_decoder(img, iterations=150, **SMALL)
    tiled = fit_decoder(img, iterations=150, tile_size=48, **SMALL)
    r = tiled.report
    assert r["tiled"] and not whole.report["tiled"] and tiled.output.shape == img.shape
    assert r["patches"] == "2x3" and r["patch_size"] == [48, 48]  # overlaps >= 32 px
    assert [(p["y"], p["x"]) for p in r["patch_metrics"]] == [(0, 0), (0, 16), (0, 32), (16, 0), (16, 16), (16, 32)]
    assert len(tiled.patches) == 6 and psnr(tiled.output, img) > psnr(whole.output, img) - 1.0
    # the hand-over lines (centres of the overlaps) are as good as the image elsewhere
    ys, xs = (32,), (32, 48)
    assert _band_psnr(tiled.output, img, ys, 0) > psnr(tiled.output, img) - 1.5
    assert _band_psnr(tiled.output, img, xs, 1) > psnr(tiled.output, img) - 1.5


def test_overlapping_tiles_share_their_code_where_they_overlap():
    from napari_dip.decoder import _settings
    img = phantom(64, 80)
    kw = dict(task="fit", channels=16, blocks=3, scale=4, upsample="bilinear", code="blurred", code_3d=False,
              feature_size=4.0, patches="1x1", ensemble=2, factor=2, mask=None, iterations=10, lr=0.01,
              stop="fixed", seed=3, ground_truth=None, channel_axis=None, precision=None, preview_every=0,
              device="cpu", max_memory=None)
    config, parts, _, batch = _settings(img, tile_size=48, **kw)
    parts(config, src=img[None, None], gt=None, mask=None, intensity=None, spatial=(64, 80))
    codes = parts.codes([(0, t) for t in range(parts.count)])  # 2 members x 6 tiles of 12 x 12 code pixels
    assert codes.shape == (12, 16, 12, 12) and batch == 12
    # tiles 0 and 1 lie side by side 16 output (4 code) pixels apart: 8 code columns in common
    np.testing.assert_array_equal(codes[0][..., 4:].numpy(), codes[1][..., :8].numpy())
    assert not np.allclose(codes[0].numpy(), codes[6].numpy())  # members have their own codes


def test_a_budget_too_small_for_the_whole_image_picks_tiles_and_batches_it_holds():
    from napari_dip.core.memory import fit_bytes
    from napari_dip.core.nets.decoder import DecoderConfig
    img = phantom(256, 256)
    net = DecoderConfig(channels=16, blocks=3, scale=4)
    whole = fit_bytes(net, 1, (256, 256), precision="fp32")
    # fp32 throughout: on a CPU with bf16 hardware 'auto' would plan the tiles in bf16
    res = fit_decoder(img, iterations=2, max_memory=whole // 2, precision="fp32", **SMALL)
    r = res.report
    assert r["tiled"] and r["patch_size"][0] < 256 and res.output.shape == img.shape
    per_tile = fit_bytes(net, 1, tuple(r["patch_size"]), precision="fp32")
    assert 1 <= r["batch_size"] < 16 and r["batch_size"] * per_tile <= whole // 2


def test_patches_and_tiles_together_are_refused_in_one_line():
    with pytest.raises(ValueError, match="patches=2x2 and tiles are two ways of cutting the image"):
        fit_decoder(phantom(64, 80), patches="2x2", tile_size=32, iterations=2, **SMALL)
