"""Tiles as problems in api.run: every task, coherent codes, blending into the output, refusals."""
import numpy as np
import pytest
import torch

from napari_dip import api
from napari_dip.arrays import Intensity
from napari_dip.core.fit import drain
from napari_dip.core.nets.decoder import DecoderConfig
from napari_dip.core.task import make_config
from napari_dip.tiled import tile_slices


def _smooth(h, w, seed=0):
    y, x = np.mgrid[0:h, 0:w] / 24.0
    clean = (0.5 + 0.3 * np.sin(y) * np.cos(x)).astype(np.float32)
    noisy = np.clip(clean + np.random.default_rng(seed).normal(0, 0.1, clean.shape), 0, 1).astype(np.float32)
    return clean, noisy


def _psnr(x, ref):
    return 10 * np.log10(1 / np.mean((np.clip(x, 0, 1) - ref) ** 2))


def test_tiled_denoise_blends_tiles_and_improves_on_the_input():
    clean, noisy = _smooth(96, 80)
    config = make_config("denoise", iterations=40, stop="fixed")
    events = []
    out, report = drain(api.run(config, noisy, tile_size=64, ground_truth=clean), events.append)
    tiling = report["tiling"]
    assert tiling["tile"] == [64, 64] and tiling["tiles"] == 4 and tiling["grid"] == [2, 2]
    assert out.shape == noisy.shape and np.isfinite(out).all()
    assert _psnr(out, clean) > _psnr(noisy, clean) + 3
    record = report["slices"][0]
    assert len(record["tiles"]) == 4 and record["psnr"] == pytest.approx(_psnr(out, clean), abs=0.05)
    progress = [e for e in events if isinstance(e, api.SliceProgress)]
    assert progress[0].count == 4 and all(e.progress.preview is None for e in progress)
    assert sorted({t for e in progress for t in e.tiles}) == [0, 1, 2, 3]
    assert progress[0].eta > 0 and progress[-1].eta == pytest.approx(0, abs=1e-9)  # seconds left in the run
    done = [e for e in events if isinstance(e, api.SliceDone)]
    assert len(done) == 1 and done[0].record["slice"] == 0


def test_small_images_and_budgets_that_fit_are_not_tiled():
    _, noisy = _smooth(40, 40)
    out, report = api.denoise(noisy, iterations=2, stop="fixed", max_memory="8GB", return_report=True)
    assert "tiling" not in report and out.shape == noisy.shape


def test_superres_and_inpaint_tile_their_inputs():
    clean, noisy = _smooth(48, 40)
    up, report = api.super_resolve(noisy, 2, iterations=3, stop="fixed", tile_size=64, return_report=True)
    assert up.shape == (96, 80) and report["tiling"]["tile"] == [64, 64] and report["tiling"]["tiles"] == 4
    assert np.isfinite(up).all()
    mask = np.ones((96, 80), bool)
    mask[40:50, 30:40] = False
    filled, report = api.inpaint(noisy.repeat(2, 0).repeat(2, 1), mask, iterations=3, stop="fixed", tile_size=64,
                                 return_report=True)
    assert filled.shape == (96, 80) and report["tiling"]["tiles"] == 4


def test_codes_are_one_code_cut_like_the_image():
    for network, code in ((None, "uniform"), (DecoderConfig(channels=8, blocks=2, scale=4), "blurred")):
        config = make_config("denoise", network=network, code=code) if network else make_config("denoise")
        src = np.zeros((1, 1, 150, 120), np.float32)
        tiles, _ = tile_slices(config, src=src, gt=None, mask=None, intensity=Intensity(0, 1), spatial=(150, 120),
                               padded=(160, 128), device=torch.device("cpu"), tile_size=64)
        grid = tiles.grid_hr.reduced(tiles.code_divisor)
        codes = tiles.codes([(0, t) for t in range(tiles.count)])
        assert codes.shape[0] == tiles.count and codes.shape[-2:] == grid.tile
        (y0, x0), (y1, x1) = grid.boxes()[0], grid.boxes()[1]  # horizontal neighbours
        overlap = x0 + grid.tile[1] - x1
        assert overlap > 0
        assert torch.equal(codes[0][:, :, x1 - x0:], codes[1][:, :, :overlap])
        assert not torch.equal(codes[0], codes[1])


def test_a_tile_that_cannot_fit_is_refused_before_any_compute():
    _, noisy = _smooth(96, 96)
    with pytest.raises(ValueError, match=r"one tile of 64x64 pixels needs about .* MB but the memory budget is "
                                         r"1.00 MB; raise --max-memory"):
        next(api.run(make_config("denoise", iterations=2), noisy, max_memory="1MB"))


def test_cli_tiles_a_slice_and_says_what_runs(tmp_path, capsys):
    import json

    import tifffile

    from napari_dip.cli import main
    _, noisy = _smooth(96, 80)
    src, out, report = tmp_path / "in.tif", tmp_path / "out.tif", tmp_path / "r.json"
    tifffile.imwrite(src, (noisy * 255).astype(np.uint8))
    assert main(["denoise", str(src), "-o", str(out), "--iterations", "6", "--stop", "fixed", "--tile-size", "64",
                 "--report", str(report)]) == 0
    err = capsys.readouterr().err
    assert "tiling: 4 tile(s) of 64x64 (2 x 2 per slice" in err and "s per iteration" in err
    assert "tiling: 4/4 tile(s) done" in err
    import re  # iterations over tiles, with the time left
    assert re.search(r"slice 0, tiles? [0-9-]+: iteration 6/6, at most about 0 min 00 s left", err)
    assert tifffile.imread(out).shape == (96, 80)
    assert json.loads(report.read_text())["tiling"]["tiles"] == 4
    assert main(["denoise", str(src), "-o", str(tmp_path / "o2.tif"), "--max-memory", "1MB", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory budget is 1.00 MB; raise --max-memory" in err[0]
    assert not (tmp_path / "o2.tif").exists()


def _identity_fit(problem, settings, rule, *, device, cancel=None):
    """A 'fit' that returns what the operator's inverse would: the observation, repeated by the
    super-resolution factor (nearest neighbour). Tiles of it must blend back to the input."""
    from napari_dip.core.fit import FitResult
    obs = problem.observed.numpy()
    f = getattr(problem.operator, "scale", 1)  # the super-resolution factor
    out = obs.repeat(f, -2).repeat(f, -1) if f > 1 else obs
    n = len(obs)
    yield from ()
    return FitResult(out.copy(), [1] * n, 1, 0.0, 0, np.zeros((1, n), np.float32), fitted_iterations=[1] * n)


class _Shift:
    """A user operator acting locally: the image shifted by one pixel (reflected at the edge)."""

    halo = 1

    def __call__(self, x):
        return torch.cat([x[..., :1, :], x[..., :-1, :]], dim=-2)


def test_an_identity_fit_through_tiles_reproduces_the_input_for_every_task(monkeypatch):
    monkeypatch.setattr(api, "fit", _identity_fit)
    _, noisy = _smooth(96, 80)
    delta = np.zeros((7, 7), np.float32)
    delta[3, 3] = 1
    mask = np.ones((96, 80), bool)
    mask[40:50, 30:40] = False
    runs = {"denoise": api.denoise(noisy * 200, tile_size=64, return_report=True),
            "inpaint": api.inpaint(noisy, mask, tile_size=64, return_report=True),
            "deconvolve": api.deconvolve(noisy, delta, tile_size=64, return_report=True),
            "restore": api.restore(noisy, _Shift(), tile_size=64, return_report=True)}
    for task, (out, report) in runs.items():
        want = noisy * 200 if task == "denoise" else noisy
        assert out.shape == want.shape and report["tiling"]["tiles"] == 4, task
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5, err_msg=task)
    small = noisy[::2, ::2]
    up, report = api.super_resolve(small, 2, tile_size=64, return_report=True)
    assert report["tiling"]["tiles"] == 4
    np.testing.assert_allclose(up, small.repeat(2, 0).repeat(2, 1), atol=1e-5)
    assert runs["deconvolve"][1]["tiling"]["margin"] >= 3  # the PSF's radius


def test_deconvolution_tiles_overlap_more_than_twice_the_psf_radius_and_fit_like_the_whole():
    from napari_dip.core.operators import Convolve, gaussian_psf
    clean, _ = _smooth(96, 64)
    psf = gaussian_psf(1.5).numpy()
    blurred = Convolve(psf)(torch.from_numpy(clean)[None, None])[0, 0].numpy()
    kw = dict(iterations=30, stop="fixed", return_report=True)
    tiled, report = api.deconvolve(blurred, psf, tile_size=64, ground_truth=clean, **kw)
    whole, whole_report = api.deconvolve(blurred, psf, ground_truth=clean, **kw)
    radius = psf.shape[0] // 2
    assert report["tiling"]["overlap_min"] >= 2 * radius + 2 and report["tiling"]["margin"] >= radius
    assert "tiling" not in whole_report and tiled.shape == blurred.shape
    reblur = Convolve(psf)(torch.from_numpy(tiled)[None, None])[0, 0].numpy()
    whole_reblur = Convolve(psf)(torch.from_numpy(whole)[None, None])[0, 0].numpy()
    # the tiled image explains the observation about as well as the whole-image fit does
    assert _psnr(reblur, blurred) > _psnr(whole_reblur, blurred) - 1.5
    assert report["slices"][0]["psnr"] > whole_report["slices"][0]["psnr"] - 1.5


def test_an_operator_that_cannot_be_tiled_is_refused_in_one_line_before_any_compute():
    _, noisy = _smooth(96, 80)
    with pytest.raises(ValueError, match=r"restoration with this operator cannot be fitted in tiles \(tile_size "
                                         r"asks for tiles\): give the operator an integer `halo`"):
        api.restore(noisy, lambda x: x, tile_size=64)
    with pytest.raises(ValueError, match=r"tiles of 64x64 are too small for an operator reaching 40 pixels"):
        api.deconvolve(noisy, np.ones((81, 81)), tile_size=64)


def test_cli_deconvolve_tiles_keep_shape_and_spacing(tmp_path):
    import tifffile

    from napari_dip.cli import main
    _, noisy = _smooth(96, 80)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, (noisy * 255).astype(np.uint8), resolution=(2.0, 2.0))
    outs = []
    for name, extra in (("whole.tif", []), ("tiled.tif", ["--tile-size", "64"])):
        out = tmp_path / name
        assert main(["deconvolve", str(src), "-o", str(out), "--psf-sigma", "1", "--iterations", "2",
                     "--stop", "fixed", "--quiet", *extra]) == 0
        with tifffile.TiffFile(out) as tif:
            outs.append((tif.asarray().shape, tif.pages[0].tags["XResolution"].value))
    assert outs[0] == outs[1] == ((96, 80), outs[0][1]) and outs[0][1][0] / outs[0][1][1] == pytest.approx(2.0)
