"""Bad inputs and outputs are refused before any compute, in one line, leaving nothing behind;
common image files keep their meaning (RGBA alpha, planar RGB, float RGB TIFF, the umask)."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import subprocess
from pathlib import Path
from types import SimpleNamespace

import imageio.v3 as iio
import nibabel as nib
import numpy as np
import pytest
import tifffile
import torch

import napari_dip.batch.steps as steps
from napari_dip.cli import main
from napari_dip.core.task import make_config
from napari_dip.io import ImageMeta, read_image, write_image, write_json

torch.set_num_threads(1)
QUICK = ["--iterations", "2", "--stop", "fixed", "--quiet"]


def _refused(argv: list[str], capsys, folder: Path, message: str, *, fitted=None) -> str:
    """Run the command: exit 2, one line naming ``message``, no traceback, nothing new in ``folder``."""
    before = set(os.listdir(folder))
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert message in err and "Traceback" not in err and len(err.splitlines()) == 1, err
    assert set(os.listdir(folder)) == before, "a refused run leaves nothing behind"
    return err


@pytest.fixture
def no_fit(monkeypatch):
    """Any fit fails the test: refusals must come before compute."""
    import napari_dip.api as api

    def fit(*args, **kwargs):
        raise AssertionError("a fit started")
    monkeypatch.setattr(api, "fit", fit)


@contextlib.contextmanager
def _mount(target: Path, options: str):
    """A tmpfs at ``target`` with mount ``options``; False when this machine cannot mount."""
    target.mkdir(exist_ok=True)
    ok = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(target)],
                        capture_output=True).returncode == 0
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


# --- outputs that cannot be written ------------------------------------------------------------

@pytest.mark.parametrize("shape, dtype, out, message", [
    ((16, 16), np.uint16, "o.jpg", "JPG cannot hold 16-bit values"),
    ((16, 16, 4), np.uint8, "o.jpg", "cannot hold an alpha channel (RGBA)"),
    ((16, 16), np.float32, "o.png", "PNG cannot hold float32 values"),
    ((5, 16, 16), np.uint8, "o.png", "holds one 2D image"),
])
def test_a_format_that_cannot_hold_the_result_is_refused_before_the_fit(tmp_path, capsys, no_fit, shape, dtype,
                                                                         out, message):
    src = tmp_path / ("in.png" if len(shape) == 3 and shape[-1] == 4 else "in.tif")
    data = (np.random.default_rng(0).random(shape) * 200).astype(dtype)
    iio.imwrite(src, data) if src.suffix == ".png" else tifffile.imwrite(src, data)
    _refused(["denoise", str(src), "-o", str(tmp_path / out), *QUICK], capsys, tmp_path, message)


def test_a_read_only_output_folder_is_refused_in_one_line(tmp_path, capsys, no_fit, read_only_folder):
    src = tmp_path / "in.npy"
    np.save(src, np.random.default_rng(0).random((16, 16)).astype(np.float32))
    folder = tmp_path / "ro"
    with _mount(folder, "ro,size=64k") as mounted:
        if not mounted:  # root writes through chmod; emulate the read-only mount instead
            folder.mkdir(exist_ok=True)
            read_only_folder(folder)
        _refused(["denoise", str(src), "-o", str(folder / "out.npy"), *QUICK], capsys, tmp_path,
                 "Read-only file system")
        assert os.listdir(folder) == []


def test_a_disk_without_room_for_the_store_and_output_is_refused_before_the_fit(tmp_path, capsys, no_fit,
                                                                                 monkeypatch):
    src = tmp_path / "in.npy"
    np.save(src, np.random.default_rng(0).random((8, 64, 64)).astype(np.float32))  # 128 KB store + 128 KB output
    folder = tmp_path / "small"
    with _mount(folder, "size=64k") as mounted:
        if not mounted:
            folder.mkdir(exist_ok=True)
            monkeypatch.setattr(steps.shutil, "disk_usage", lambda p: SimpleNamespace(free=64 * 1024))
        err = _refused(["denoise", str(src), "-o", str(folder / "out.npy"), *QUICK], capsys, tmp_path,
                       "not enough room on the disk for out.npy")
        assert "resumable store 131.1 KB" in err and os.listdir(folder) == []


def test_a_disk_that_fills_up_during_the_run_gives_one_line_not_a_crash(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.npy"
    np.save(src, np.random.default_rng(0).random((2, 16, 16)).astype(np.float32))

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full)
    code = main(["denoise", str(src), "-o", str(tmp_path / "out.npy"), *QUICK])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no room on the disk for the resumable store" in err and len(err.splitlines()) == 1
    assert sorted(os.listdir(tmp_path)) == ["in.npy"]


def test_a_fit_larger_than_the_free_memory_is_refused_with_the_number_and_the_fix(tmp_path, capsys, no_fit,
                                                                                    monkeypatch):
    import psutil
    src = tmp_path / "big.npy"
    np.save(src, np.zeros((1024, 1024), np.float32))
    # A slice too large for memory is fitted as tiles; refused is a run where not even one tile fits.
    from napari_dip.core.memory import fit_bytes, format_bytes
    need = fit_bytes(make_config("denoise").network, 1, (64, 64))
    monkeypatch.setattr(psutil, "virtual_memory", lambda: SimpleNamespace(available=need))  # budget: half
    err = _refused(["denoise", str(src), "-o", str(tmp_path / "out.npy"), "--quiet"], capsys, tmp_path,
                   "one tile of 64x64 pixels needs about")
    assert format_bytes(need) in err and "raise --max-memory" in err


@pytest.mark.parametrize("args, message", [
    (["--device", "cuda"], "cuda"),
    (["--preset", "turbo"], "unknown preset"),
])
def test_refused_settings_leave_no_store_folder(tmp_path, capsys, no_fit, args, message):
    src = tmp_path / "in.npy"
    np.save(src, np.random.default_rng(0).random((2, 16, 16)).astype(np.float32))
    _refused(["denoise", str(src), "-o", str(tmp_path / "out.npy"), *QUICK, *args], capsys, tmp_path, message)


def test_a_too_small_image_leaves_no_store_folder(tmp_path, capsys, no_fit):
    src = tmp_path / "tiny.npy"
    np.save(src, np.zeros((4, 4), np.float32))
    _refused(["denoise", str(src), "-o", str(tmp_path / "out.npy"), *QUICK], capsys, tmp_path, "at least 8x8")


# --- inputs that cannot be decoded ---------------------------------------------------------------

def _inputs(folder: Path) -> dict[str, str]:
    """name -> the message its refusal must contain."""
    tifffile.imwrite(folder / "good.tif", np.ones((4, 32, 32), np.float32))
    data = (folder / "good.tif").read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 3])
    flipped = bytearray(data)
    flipped[8:200] = b"\xff" * 192
    (folder / "corrupt.tif").write_bytes(bytes(flipped))
    nib.save(nib.Nifti1Image(np.random.default_rng(0).random((32, 32, 64)).astype(np.float32), np.eye(4)),
             str(folder / "good.nii.gz"))
    gz = (folder / "good.nii.gz").read_bytes()
    (folder / "truncated.nii.gz").write_bytes(gz[: len(gz) // 2])
    (folder / "plain.nii.gz").write_bytes(b"this is not gzip at all" * 20)
    np.save(folder / "objects.npy", np.array([{"pixels": 1}], dtype=object), allow_pickle=True)
    iio.imwrite(folder / "photo.png", np.zeros((16, 16), np.uint8))
    (folder / "photo.png").rename(folder / "photo.tif")
    return {"truncated.tif": "damaged or incomplete", "corrupt.tif": "damaged or incomplete",
            "truncated.nii.gz": "damaged or incomplete", "plain.nii.gz": "damaged or incomplete",
            "objects.npy": "holds Python objects", "photo.tif": "rename it to photo.png"}


def test_undecodable_inputs_are_refused_in_one_line_without_unsafe_advice(tmp_path, capsys, no_fit):
    cases = _inputs(tmp_path)
    for name, message in cases.items():
        err = _refused(["denoise", str(tmp_path / name), "-o", str(tmp_path / "out.npy"), *QUICK], capsys,
                       tmp_path, message)
        assert "allow_pickle" not in err and name in err


# --- the meaning of common image files -------------------------------------------------------------

def test_rgba_alpha_is_carried_through_unchanged_not_fitted(tmp_path):
    rng = np.random.default_rng(0)
    rgba = (rng.random((32, 32, 4)) * 255).astype(np.uint8)
    rgba[..., 3] = np.where(np.arange(32)[None, :] < 16, 255, 40)  # a sharp alpha the fit would blur
    src, out = tmp_path / "in.png", tmp_path / "out.png"
    iio.imwrite(src, rgba)
    assert main(["denoise", str(src), "-o", str(out), *QUICK]) == 0
    result = iio.imread(out)
    assert result.shape == (32, 32, 4)
    np.testing.assert_array_equal(result[..., 3], rgba[..., 3])
    assert np.abs(result[..., :3].astype(int) - rgba[..., :3]).mean() > 1  # the colour was fitted
    tif = tmp_path / "out.tif"
    assert main(["denoise", str(src), "-o", str(tif), *QUICK]) == 0
    back, meta = read_image(tif)
    assert back.dtype == np.float32 and meta.channel_axis == -1
    np.testing.assert_array_equal(back[..., 3], rgba[..., 3].astype(np.float32))


def test_planar_rgb_tiff_is_one_colour_image(tmp_path):
    planar = (np.random.default_rng(0).random((3, 32, 24)) * 255).astype(np.uint8)
    src = tmp_path / "planar.tif"
    tifffile.imwrite(src, planar, photometric="rgb", planarconfig="separate")
    image, meta = read_image(src)
    assert image.shape == (32, 24, 3) and meta.channel_axis == -1
    np.testing.assert_array_equal(image, np.moveaxis(planar, 0, -1))
    out = tmp_path / "out.tif"
    assert main(["denoise", str(src), "-o", str(out), "--report", str(tmp_path / "r.json"), *QUICK]) == 0
    assert read_image(out)[0].shape == (32, 24, 3)
    assert len(json.loads((tmp_path / "r.json").read_text())["slices"]) == 1


def test_rgb_float32_to_tiff_is_written(tmp_path):
    rgb = np.random.default_rng(0).random((2, 16, 16, 3)).astype(np.float32)
    meta = ImageMeta("", "tiff", "float32", channel_axis=-1, spacing=(2.0, 0.5, 0.5))
    back, m2 = read_image(write_image(tmp_path / "rgb.tif", rgb, meta))
    np.testing.assert_array_equal(back, rgb)
    assert m2.channel_axis == -1 and back.dtype == np.float32
    src = tmp_path / "in.png"
    iio.imwrite(src, (rgb[0] * 255).astype(np.uint8))
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.tif"), *QUICK]) == 0
    assert read_image(tmp_path / "out.tif")[0].shape == (16, 16, 3)


def test_files_are_created_with_the_users_umask(tmp_path):
    old = os.umask(0o022)
    try:
        paths = [write_image(tmp_path / "a.tif", np.ones((8, 8), np.float32)),
                 write_image(tmp_path / "a.npy", np.ones((8, 8), np.float32)),
                 write_json(tmp_path / "a.json", {"x": 1})]
        folder = write_image(tmp_path / "a.zarr", np.ones((8, 8), np.float32))
        os.umask(0o027)
        paths.append(write_image(tmp_path / "b.png", np.ones((8, 8), np.uint8), ImageMeta("", "picture", "uint8")))
    finally:
        os.umask(old)
    assert [p.stat().st_mode & 0o777 for p in paths] == [0o644, 0o644, 0o644, 0o640]
    assert folder.stat().st_mode & 0o777 == 0o755
