"""Large outputs stream to disk: TIFF and NPY outputs are filled slice by slice in a memory map
of the new file (renamed into place once complete), byte-identical to the file written from RAM;
api.run with a memory-mapped ``out=`` holds no second full-size copy."""
from __future__ import annotations

import errno
import os
import tracemalloc

import numpy as np
import pytest
import tifffile
import torch

from napari_dip import api
from napari_dip.batch import process_volume, runner, work_folder
from napari_dip.cli import main
from napari_dip.core.task import make_config
from napari_dip.io import ImageMeta
from test_tiled import _identity_fit  # a 'fit' returning the observation

torch.set_num_threads(1)
QUICK = dict(iterations=2, stop="fixed")


def _volume(shape, dtype, seed=0):
    y, x = np.mgrid[0:shape[-2], 0:shape[-1]] / 8.0
    base = np.stack([np.sin(y + k) * np.cos(x) for k in range(shape[0])])
    noisy = base + np.random.default_rng(seed).normal(0, 0.2, base.shape)
    scale = 30000 if np.dtype(dtype).kind == "u" and np.dtype(dtype).itemsize == 2 else 100
    return (noisy * scale / 3 + scale / 2).clip(0, None).astype(dtype)


CASES = {  # name: (task, factor, input dtype, output, --dtype, axis, slices)
    "uint16 tiff, input type, some slices copied": ("denoise", 1, np.uint16, "out.tif", "input", 0, "0,2"),
    "float32 npy, sliced along X": ("denoise", 1, np.float32, "out.npy", "float32", 2, "3:5"),  # (10, 12, 6)
    "uint8 tiff super-resolved, ImageJ spacing": ("superres", 2, np.uint8, "out.tif", "input", 0, "1"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_streamed_output_is_byte_identical_to_the_one_written_from_ram(tmp_path, monkeypatch, case):
    task, factor, dtype, name, out_dtype, axis, slices = CASES[case]
    vol = _volume((3, 16, 24) if axis == 0 else (10, 12, 6), dtype)
    meta = ImageMeta("", "tiff", np.dtype(dtype).name, spacing=(2.0, 0.5, 0.25), unit="um", axes="ZYX")
    config = make_config(task, factor=factor, **QUICK)
    kw = dict(axis=axis, slices=slices, dtype=out_dtype)
    streamed = tmp_path / "streamed" / name
    filled = []
    real_fill = runner._fill
    monkeypatch.setattr(runner, "_fill", lambda final, *a: filled.append(type(final)) or real_fill(final, *a))
    assert process_volume(config, vol, meta, streamed, **kw)["complete"]
    assert filled == [np.memmap]  # filled in a memory map of the file itself
    monkeypatch.setattr(runner, "streams", lambda path, meta: False)  # today's path: assembled in RAM
    in_ram = tmp_path / "ram" / name
    assert process_volume(config, vol, meta, in_ram, **kw)["complete"]
    assert filled[1] is np.ndarray
    assert streamed.read_bytes() == in_ram.read_bytes()
    back = np.load(streamed) if name.endswith(".npy") else tifffile.imread(streamed)
    assert back.dtype == (np.float32 if out_dtype == "float32" else dtype)
    assert back.shape == tuple(n * factor if a in (1, 2) else n for a, n in enumerate(vol.shape))
    if factor == 1:  # slices outside the range are the input's, unchanged
        picked = {"0,2": {0, 2}, "3:5": {3, 4}}[slices]
        untouched = [i for i in range(vol.shape[axis]) if i not in picked]
        assert np.array_equal(np.take(back, untouched, axis), np.take(vol, untouched, axis).astype(back.dtype))
    else:
        assert not back[0].any() and not back[2].any() and back[1].any()  # zero outside the range
    assert sorted(os.listdir(streamed.parent)) == [name, f"{name}.napari-dip"]  # no temporary file left


def test_the_output_appears_only_once_complete_and_a_failed_write_leaves_nothing_under_its_name(tmp_path,
                                                                                              monkeypatch):
    vol = _volume((3, 16, 16), np.uint16)
    src, out = tmp_path / "in.tif", tmp_path / "out.tif"
    tifffile.imwrite(src, vol, photometric="minisblack")
    argv = ["denoise", str(src), "-o", str(out), "--iterations", "2", "--stop", "fixed", "--quiet"]
    seen = []
    real_done = api.SliceDone.__init__

    def on_done(self, *args, **kwargs):  # while slices finish: nothing under the output's name
        seen.append(sorted(os.listdir(tmp_path)))
        real_done(self, *args, **kwargs)
    monkeypatch.setattr(api.SliceDone, "__init__", on_done)
    real_allocate = os.posix_fallocate

    def full_for_the_output(fd, offset, length):
        if ".tmp.tif" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_allocate(fd, offset, length)
    monkeypatch.setattr(os, "posix_fallocate", full_for_the_output)
    assert main(argv) == 2  # the disk filled up after the fit: one line, no traceback
    assert seen and all(files == ["in.tif", "out.tif.napari-dip", "out.tif.napari-dip.lock"] for files in seen)
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "out.tif.napari-dip"]  # no output, no temporary file
    monkeypatch.setattr(os, "posix_fallocate", real_allocate)
    seen.clear()
    assert main(argv + ["--report", str(tmp_path / "r.json")]) == 0  # room again: finished from the store
    assert seen == []  # no slice fitted again
    assert tifffile.imread(out).shape == vol.shape
    assert sorted(os.listdir(tmp_path)) == ["in.tif", "out.tif", "out.tif.napari-dip", "r.json"]


def test_a_failed_write_gives_one_line(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.npy"
    np.save(src, _volume((2, 16, 16), np.float32))

    def full(fd, offset, length):
        if ".tmp.npy" in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(os, "posix_fallocate", full)
    assert main(["denoise", str(src), "-o", str(tmp_path / "out.npy"), "--iterations", "2", "--stop", "fixed",
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no room on the disk for the output out.npy" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out.npy").exists()


def test_a_cancelled_run_leaves_no_output_and_no_temporary_file(tmp_path):
    vol = _volume((3, 16, 16), np.float32)
    out = tmp_path / "out.tif"
    done = []
    report = process_volume(make_config("denoise", **QUICK), vol, ImageMeta("", "tiff", "float32"), out,
                            on_event=lambda e: done.append(e) if isinstance(e, api.SliceDone) else None,
                            cancel=lambda: len(done) >= 1)
    assert not report["complete"] and len(done) == 1
    assert sorted(os.listdir(tmp_path)) == ["out.tif.napari-dip"]  # the finished slice kept for a rerun


def _peak_bytes(run) -> int:
    """Peak bytes NumPy (and Python) allocated while ``run()`` ran (tracemalloc)."""
    tracemalloc.start()
    try:
        run()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _run_peaks(tmp_path, counts, side, *, memmap: bool, tile_size=None) -> tuple[list[int], list[np.ndarray]]:
    """api.run's peak allocation over stacks of ``counts`` slices (an identity fit: api.run's own
    arrays, not the network's), into a memory-mapped ``out=`` or not; and the outputs."""
    config = make_config("denoise", iterations=1, stop="fixed")
    peaks, outputs = [], []
    for n in counts:
        image = _volume((n, side, side), np.float32)
        out = np.lib.format.open_memmap(tmp_path / f"{n}.npy", mode="w+", dtype=np.float32,
                                        shape=image.shape) if memmap else None
        result = []

        def run(image=image, out=out, result=result):
            result.append(api.drain(api.run(config, image, out=out, batch_size=1, warm_start=False,
                                            tile_size=tile_size))[0])
        peaks.append(_peak_bytes(run))
        outputs.append(np.asarray(result[0]))
    return peaks, outputs


def test_api_run_into_a_memmap_out_allocates_nothing_that_grows_with_the_stack(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "fit", _identity_fit)
    monkeypatch.setattr(api, "tile_slices", lambda *a, **k: (None, None))  # whole slices: no plan to time
    counts, side = (2, 6), 128
    grown = (counts[1] - counts[0]) * side * side * 4  # the output's growth, bytes
    _run_peaks(tmp_path, (1,), side, memmap=True)  # first-call set-up is not counted
    in_ram, expected = _run_peaks(tmp_path, counts, side, memmap=False)
    streamed, outputs = _run_peaks(tmp_path, counts, side, memmap=True)
    assert in_ram[1] - in_ram[0] > grown  # without out=, the output is held (the measure can fail)
    assert streamed[1] - streamed[0] < grown / 4, (streamed, grown)  # the records' few KB a slice, no array
    assert all(np.array_equal(a, b) for a, b in zip(outputs, expected))  # the same values in the memmap


def test_api_run_in_tiles_into_a_memmap_out_holds_one_slice_at_a_time(tmp_path, monkeypatch):
    monkeypatch.setattr(api, "fit", _identity_fit)
    counts, side = (1, 3), 96  # four tiles of 64 a slice
    _run_peaks(tmp_path, (1,), side, memmap=True, tile_size=64)
    streamed, outputs = _run_peaks(tmp_path, counts, side, memmap=True, tile_size=64)
    grown = (counts[1] - counts[0]) * side * side * 4
    assert streamed[1] - streamed[0] < grown / 2, (streamed, grown)  # the tiles' records; one slice blended at a time
    np.testing.assert_allclose(outputs[1], _volume((3, side, side), np.float32), rtol=1e-5, atol=1e-3)  # blended back


def test_an_out_that_cannot_take_the_slices_in_place_is_refused_before_the_fit(monkeypatch):
    def no_fit(*args, **kwargs):
        raise AssertionError("a fit started")
    monkeypatch.setattr(api, "fit", no_fit)
    image = np.random.default_rng(0).random((4, 3, 16, 16)).astype(np.float32)  # (T, Z, Y, X)
    out = np.zeros((3, 4, 16, 16), np.float32).transpose(1, 0, 2, 3)  # T and Z strided apart
    with pytest.raises(ValueError, match="out cannot be written slice by slice in place"):
        api.drain(api.run(make_config("denoise", **QUICK), image, out=out))


@pytest.mark.parametrize("problem", ["no room", "read-only"])
def test_a_tiff_output_without_room_or_write_access_is_refused_in_one_line_before_the_fit(
        tmp_path, capsys, monkeypatch, read_only_folder, problem):
    import napari_dip.batch.steps as steps

    def no_fit(*args, **kwargs):
        raise AssertionError("a fit started")
    monkeypatch.setattr(api, "fit", no_fit)
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, _volume((4, 64, 64), np.uint16), photometric="minisblack")
    folder = tmp_path / "out"
    folder.mkdir()
    if problem == "no room":  # the store (float32) and the output (uint16) counted once each
        monkeypatch.setattr(steps.shutil, "disk_usage", lambda p: type("Usage", (), {"free": 64 * 1024}))
        message = "it needs about 98.3 KB (resumable store 65.5 KB, output 32.8 KB uncompressed)"
    else:
        read_only_folder(folder)
        message = "Read-only file system"
    code = main(["denoise", str(src), "-o", str(folder / "out.tif"), "--dtype", "input", "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err
    assert os.listdir(folder) == []
