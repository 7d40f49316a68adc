"""Zarr and OME-Zarr volumes: read lazily, one slice in memory, resumable output, metadata kept."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
import zarr

from napari_dip.api import SliceDone
from napari_dip.batch import process_volume, work_folder
from napari_dip.cli import main
from napari_dip.core.task import make_config
from napari_dip.io import read_image, write_image

torch.set_num_threads(1)


def _volume(n: int = 3) -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:32, :32]
    clean = np.stack([np.sin(xx / (4 + k)) + np.cos(yy / 5) for k in range(n)]) * 100 + 300
    return (clean + rng.normal(0, 30, clean.shape)).astype(np.float32)


class Watched:
    """A lazy array that records the largest part ever read from it."""

    def __init__(self, array):
        self.array, self.largest = array, 0
        self.shape, self.dtype, self.chunks = array.shape, array.dtype, array.chunks

    def __getitem__(self, key):
        part = np.asarray(self.array[key])
        self.largest = max(self.largest, part.size)
        return part


@pytest.mark.slow
def test_zarr_run_matches_npy_reads_a_slice_at_a_time_and_resumes(tmp_path, capsys):
    vol = _volume()
    np.save(tmp_path / "v.npy", vol)
    src = zarr.create_array(str(tmp_path / "v.zarr"), shape=vol.shape, chunks=(2, 16, 16), dtype="float32",
                            attributes={"origin": "microscope 3"})
    src[...] = vol
    config = make_config("denoise", iterations=3, stop="fixed", noise="auto")  # the CLI's default
    image, meta = read_image(tmp_path / "v.npy")
    process_volume(config, image, meta, tmp_path / "ref.npy")
    lazy, zmeta = read_image(tmp_path / "v.zarr")
    assert isinstance(lazy, zarr.Array) and zmeta.format == "zarr"
    watched, done = Watched(lazy), []
    out = tmp_path / "out.zarr"

    def count(event):
        if isinstance(event, SliceDone):
            done.append(event.slice)

    first = process_volume(config, watched, zmeta, out, on_event=count, cancel=lambda: len(done) >= 1)
    assert watched.largest <= 32 * 32  # chunks for the range scan, then single slices
    assert not out.exists() and first["processed_slices"] == [0] and first["missing_slices"] == [1, 2]
    partial = work_folder(out) / "out.zarr"
    assert zarr.open_array(str(partial)).chunks == (1, 32, 32)  # one chunk per slice
    assert sorted(json.loads((work_folder(out) / "record.json").read_text())["done"]) == ["0"]
    report = tmp_path / "r.json"
    assert main(["denoise", str(tmp_path / "v.zarr"), "-o", str(out), "--iterations", "3", "--stop", "fixed",
                 "--quiet", "--report", str(report)]) == 0
    r = json.loads(report.read_text())
    assert r["skipped_slices"] == [0] and r["processed_slices"] == [1, 2] and r["complete"]
    assert not partial.exists() and f"wrote {out}" in capsys.readouterr().out
    result = zarr.open_array(str(out))
    assert result.dtype == np.float32 and result.attrs.asdict() == {"origin": "microscope 3"}
    np.testing.assert_allclose(result[...], np.load(tmp_path / "ref.npy"), rtol=1e-5, atol=1e-3)
    again = process_volume(config, lazy, zmeta, out)
    assert again["skipped_slices"] == [0, 1, 2] and not again["written"]


def _ome(path, data: np.ndarray, zarr_format: int):
    """A two-level OME-Zarr image (0.4 on Zarr 2, 0.5 on Zarr 3) with voxel size and offset."""
    ms = {"version": "0.4", "name": "cells",
          "axes": [{"name": "z", "type": "space", "unit": "micrometer"},
                   {"name": "y", "type": "space", "unit": "micrometer"},
                   {"name": "x", "type": "space", "unit": "micrometer"}],
          "datasets": [{"path": "0", "coordinateTransformations": [
                            {"type": "scale", "scale": [2.0, 0.5, 0.5]},
                            {"type": "translation", "translation": [0.0, 1.0, 1.0]}]},
                       {"path": "1", "coordinateTransformations": [
                            {"type": "scale", "scale": [2.0, 1.0, 1.0]},
                            {"type": "translation", "translation": [0.0, 1.25, 1.25]}]}]}
    omero = {"channels": [{"label": "DAPI", "window": {"start": 0, "end": 1000}}]}
    if zarr_format == 2:
        attrs = {"multiscales": [ms], "omero": omero}
    else:
        ms.pop("version")
        attrs = {"ome": {"version": "0.5", "multiscales": [ms], "omero": omero}}
    group = zarr.open_group(str(path), mode="w", zarr_format=zarr_format)
    group.attrs.update(attrs)
    group.create_array("0", shape=data.shape, chunks=(1, 32, 32), dtype=data.dtype)[...] = data
    group.create_array("1", shape=(3, 16, 16), chunks=(1, 16, 16), dtype=data.dtype)[...] = data[:, ::2, ::2]
    return path


@pytest.mark.parametrize("zarr_format", [2, 3])
def test_ome_zarr_superres_keeps_metadata_and_halves_the_voxel_size(tmp_path, zarr_format):
    vol = np.rint(_volume()).astype(np.uint16)
    image, meta = read_image(_ome(tmp_path / "in.ome.zarr", vol, zarr_format))
    assert image.shape == (3, 32, 32) and meta.axes == "ZYX" and meta.unit == "micrometer"
    assert meta.spacing == (2.0, 0.5, 0.5) and meta.channel_axis is None
    out = tmp_path / "sr.ome.zarr"
    report = process_volume(make_config("superres", factor=2, iterations=2, stop="fixed"), image, meta, out,
                            slices="1:2", dtype="input")
    assert report["output_shape"] == [3, 64, 64] and report["processed_slices"] == [1]
    result, m2 = read_image(out)
    assert result.shape == (3, 64, 64) and result.dtype == np.uint16
    assert m2.spacing == (2.0, 0.25, 0.25) and m2.axes == "ZYX" and m2.unit == "micrometer"
    assert m2.extra["zarr_format"] == zarr_format
    attrs = m2.extra["attrs"]
    ome = attrs.get("ome", attrs)
    assert ome["omero"]["channels"][0]["label"] == "DAPI"
    (level,) = ome["multiscales"][0]["datasets"]  # the stale lower-resolution level is dropped
    assert level["coordinateTransformations"][1]["translation"] == [0.0, 0.875, 0.875]  # same outer edge
    assert result[1].mean() > 100 and not result[0].any() and not result[2].any()


def test_zarr_written_whole_and_a_missing_zarr_names_the_extra(tmp_path, monkeypatch):
    vol = _volume(2)
    path = write_image(tmp_path / "w.zarr", vol)
    np.testing.assert_array_equal(read_image(path)[0][...], vol)
    write_image(path, vol * 2)  # replaces the older store
    np.testing.assert_array_equal(read_image(path)[0][...], vol * 2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.zarr"]
    monkeypatch.setitem(sys.modules, "zarr", None)
    with pytest.raises(ImportError, match=r"pip install napari-dip\[zarr\]"):
        read_image(path)
    with pytest.raises(ImportError, match=r"pip install napari-dip\[zarr\]"):
        write_image(tmp_path / "x.zarr", vol)


@pytest.mark.slow
def test_zarr_output_on_a_dask_cluster_matches_the_local_run(tmp_path):
    from napari_dip.batch import open_client
    vol = _volume(2)
    config = make_config("denoise", iterations=2, stop="fixed")
    meta = read_image(write_image(tmp_path / "v.zarr", vol))[1]
    local = process_volume(config, vol, meta, tmp_path / "local.zarr")
    with open_client(workers=1, processes=False) as (client, _):
        dask = process_volume(config, vol, meta, tmp_path / "dask.zarr", client=client)
    assert local["complete"] and dask["complete"] and sorted(dask["processed_slices"]) == [0, 1]
    np.testing.assert_allclose(read_image(tmp_path / "dask.zarr")[0][...],
                               read_image(tmp_path / "local.zarr")[0][...], rtol=1e-5, atol=1e-3)
