"""Volumes whose slices are fitted in tiles resume per tile: kept tiles verified, never refitted,
and the resumed output bit-identical to an uninterrupted run's."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import tifffile
import torch

from napari_dip.api import SliceProgress
from napari_dip.batch import process_volume, work_folder
from napari_dip.core.task import make_config
from napari_dip.io import ImageMeta

torch.set_num_threads(1)
TIFF = ImageMeta("", "tiff", "float32")


def test_an_interrupted_tiled_volume_resumes_per_tile_bit_identically(tmp_path):
    y, x = np.mgrid[0:96, 0:80] / 24.0
    vol = np.stack([np.sin(y) * np.cos(x + k) for k in range(2)]) * 100 + 300
    vol = (vol + np.random.default_rng(0).normal(0, 20, vol.shape)).astype(np.float32)
    config = replace(make_config("denoise", iterations=3, stop="fixed"), extra={"tile_size": 64})  # 4 tiles a slice
    process_volume(config, vol, TIFF, tmp_path / "ref.tif")
    out = tmp_path / "out.tif"
    seen = []

    def fitted(event):
        if isinstance(event, SliceProgress) and event.progress.iteration == 1:
            seen.extend((event.slice, t) for t in event.tiles)

    first = process_volume(config, vol, TIFF, out, on_event=fitted, cancel=lambda: len(seen) > 3)
    assert not first["complete"] and not out.exists() and seen == [(0, 0), (0, 1), (0, 2), (0, 3)]
    folder = work_folder(out)
    kept = json.loads((folder / "record.json").read_text())["tiles"]
    assert sorted(kept) == ["0:0", "0:1", "0:2"]  # the fourth was cancelled: not kept
    damaged = folder / "tiles" / "0_1.npy"
    damaged.write_bytes(damaged.read_bytes()[:-8] + b"\0" * 8)  # its pixels no longer match their checksum
    seen.clear()
    second = process_volume(config, vol, TIFF, out, on_event=fitted)
    assert second["complete"] and seen == [(0, 1), (0, 3), (1, 0), (1, 1), (1, 2), (1, 3)]
    assert any("tile 1 of slice 0 did not verify" in n for n in second["notices"])
    assert tifffile.imread(out).tobytes() == tifffile.imread(tmp_path / "ref.tif").tobytes()
    assert not (folder / "tiles").exists()


def test_a_large_nifti_output_assembled_on_disk_is_the_one_assembled_in_ram(tmp_path, monkeypatch):
    """NIfTI outputs are not filled in place (TIFF and NPY are: tests/test_streamed_output.py)."""
    from napari_dip.batch import runner
    vol = (np.random.default_rng(1).random((2, 32, 32)) * 200).astype(np.uint8)
    meta = ImageMeta("", "tiff", "uint8")
    config = make_config("denoise", iterations=2, stop="fixed")
    process_volume(config, vol, meta, tmp_path / "ram.nii", dtype="input")
    assembled = []
    real = np.lib.format.open_memmap

    def spy(path, *args, **kw):
        assembled.append(str(path))
        return real(path, *args, **kw)

    monkeypatch.setattr(runner, "ASSEMBLE_ON_DISK_BYTES", 0)  # every output counts as large
    monkeypatch.setattr(np.lib.format, "open_memmap", spy)
    process_volume(config, vol, meta, tmp_path / "disk.nii", dtype="input")
    assert any(p.endswith("output.npy") for p in assembled)
    assert (tmp_path / "disk.nii").read_bytes() == (tmp_path / "ram.nii").read_bytes()
    assert not (work_folder(tmp_path / "disk.nii") / "output.npy").exists()
