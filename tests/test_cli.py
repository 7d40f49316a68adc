"""The napari-dip command: round trips per format, reports, errors, atomic writes."""
import json
import subprocess
import sys
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile

from napari_dip.cli import main

QUICK = ["--iterations", "3", "--stop", "fixed", "--quiet"]


def _noisy(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 255).astype(np.uint8)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_tiff_round_trip_keeps_shape_and_writes_float32(tmp_path):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, _noisy((20, 24)))
    out = tmp_path / "out.tif"
    assert main(["denoise", str(src), "-o", str(out), *QUICK]) == 0
    result = tifffile.imread(out)
    assert result.shape == (20, 24) and result.dtype == np.float32
    assert 0 <= result.min() and result.max() <= 255
    assert not [f for f in _files(tmp_path) if ".tmp" in f]  # no temporary files left behind


def test_rgb_png_round_trip_stays_rgb_uint8(tmp_path):
    src = tmp_path / "in.png"
    iio.imwrite(src, _noisy((16, 16, 3)))
    out = tmp_path / "out.png"
    assert main(["denoise", str(src), "-o", str(out), *QUICK]) == 0
    result = iio.imread(out)
    assert result.shape == (16, 16, 3) and result.dtype == np.uint8


def test_npy_stack_is_processed_slice_by_slice_with_a_report(tmp_path):
    src, out, rep = tmp_path / "in.npy", tmp_path / "out.npy", tmp_path / "r.json"
    np.save(src, _noisy((2, 16, 16)).astype(np.float32) / 255)
    truth = tmp_path / "gt.npy"
    np.save(truth, np.full((2, 16, 16), 0.5, np.float32))
    assert main(["denoise", str(src), "-o", str(out), "--report", str(rep), "--ground-truth", str(truth),
                 *QUICK]) == 0
    assert np.load(out).shape == (2, 16, 16)
    report = json.loads(rep.read_text())
    assert report["task"] == "denoise" and report["preset"] == "fast"
    assert report["fit"]["iterations"] == 3 and "torch" in report and "device" in report
    assert report["parameters"] > 0
    assert [s["slice"] for s in report["slices"]] == [0, 1]
    for s in report["slices"]:
        assert {"iterations", "seconds", "final_loss", "stop_iteration", "psnr", "ssim",
                "psnr_input", "ssim_input"} <= set(s)


def test_tiff_stack_superres_scales_spacing(tmp_path):
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _noisy((2, 16, 16)), resolution=(2.0, 2.0))  # 0.5 units per pixel
    assert main(["superres", str(src), "-o", str(out), "--factor", "2", *QUICK]) == 0
    with tifffile.TiffFile(out) as tif:
        assert tif.asarray().shape == (2, 32, 32)
        x = tif.pages[0].tags["XResolution"].value
        assert x[0] / x[1] == pytest.approx(4.0)  # pixel size halved


def test_inpaint_with_a_mask_file(tmp_path):
    src, mask, out = tmp_path / "in.png", tmp_path / "mask.png", tmp_path / "out.png"
    iio.imwrite(src, _noisy((16, 16)))
    m = np.full((16, 16), 255, np.uint8)
    m[4:8, 4:8] = 0
    iio.imwrite(mask, m)
    assert main(["inpaint", str(src), "--mask", str(mask), "-o", str(out), *QUICK]) == 0
    assert iio.imread(out).shape == (16, 16)


def test_paper_preset_reports_the_paper_parameter_count(tmp_path):
    src, rep = tmp_path / "f16.png", tmp_path / "r.json"
    iio.imwrite(src, _noisy((64, 64, 3)))
    assert main(["denoise", str(src), "-o", str(tmp_path / "o.png"), "--preset", "paper", "--iterations", "1",
                 "--stop", "fixed", "--quiet", "--report", str(rep)]) == 0
    assert json.loads(rep.read_text())["parameters"] == 2_217_831


@pytest.mark.parametrize("args, message", [
    (["denoise", "missing.tif", "-o", "o.tif"], "no such file"),
    (["denoise", "{src}", "-o", "o.xyz"], "cannot tell the format"),
    (["denoise", "{src}", "-o", "{src}"], "input"),
    (["denoise", "{src}", "-o", "o.tif", "--stop", "oracle"], "--ground-truth"),
    (["denoise", "{src}", "-o", "o.tif", "--preset", "turbo"], "unknown preset"),
    (["superres", "{src}", "-o", "o.tif", "--factor", "40"], "factor must be an integer"),
    (["denoise", "{nan}", "-o", "o.tif"], "NaN"),
])
def test_user_mistakes_give_one_line_and_nonzero_exit(tmp_path, capsys, args, message):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, _noisy((16, 16)))
    nan = tmp_path / "nan.npy"
    np.save(nan, np.full((16, 16), np.nan, np.float32))
    argv = [a.format(src=src, nan=nan) for a in args]
    before = src.read_bytes()
    code = main(argv + ["--quiet"])
    err = capsys.readouterr().err.strip()
    assert code != 0
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert src.read_bytes() == before  # the input is never touched


def test_console_script_runs_without_traceback(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "napari_dip.cli", "denoise", str(tmp_path / "none.tif"),
                           "-o", str(tmp_path / "o.tif")], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("napari-dip: error: no such file") and "Traceback" not in proc.stderr


def test_failed_write_leaves_no_partial_file(tmp_path, monkeypatch):
    import napari_dip.io as io

    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, _noisy((16, 16)))
    out.write_bytes(b"earlier result")

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.tifffile if hasattr(io, "tifffile") else tifffile, "imwrite", broken)
    with pytest.raises(OSError):
        io.write_image(out, np.zeros((16, 16), np.float32))
    assert out.read_bytes() == b"earlier result"
    assert _files(tmp_path) == {"in.tif", "out.tif"}
