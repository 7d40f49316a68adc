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
    assert tifffile.imread(out).shape == (96, 80)
    assert json.loads(report.read_text())["tiling"]["tiles"] == 4
    assert main(["denoise", str(src), "-o", str(tmp_path / "o2.tif"), "--max-memory", "1MB", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory budget is 1.00 MB; raise --max-memory" in err[0]
    assert not (tmp_path / "o2.tif").exists()
