"""Batch processing of volumes: slicing, resuming, invalidation, cancelling, a Dask LocalCluster."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_dip.api import SliceDone
from napari_dip.batch import (SliceFailed, open_client, parse_slices, process_volume, slicing_for,
                              work_folder)
from napari_dip.core.task import make_config
from napari_dip.io import ImageMeta, read_image

torch.set_num_threads(1)
TIFF = ImageMeta("", "tiff", "float32")


def _volume(n: int = 5, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:32, :32]
    clean = np.stack([np.sin(xx / (4 + k)) + np.cos(yy / 5) for k in range(n)]) * 100 + 300
    return (clean + rng.normal(0, 30, clean.shape)).astype(np.float32)


def _config(**kw):
    return make_config("denoise", iterations=3, stop="fixed", **kw)


def test_slicing_axes_ranges_and_superres_geometry():
    nifti = ImageMeta("", "nifti", "float32", affine=np.array(
        [[0, 0, -0.5, 10], [-1.0, 0, 0, 20], [0, 2.0, 0, -5], [0, 0, 0, 1]]))
    cut = slicing_for((10, 12, 14, 3), nifti)  # x, y, z, t: axial is array axis 1 here
    assert (cut.axis, cut.in_plane, cut.others, cut.perm) == (1, (0, 2), (3,), (1, 3, 0, 2))
    assert cut.flat_indices([2, 3]) == [6, 7, 8, 9, 10, 11] and cut.index(7) == (2, 1)
    tzyx = slicing_for((3, 4, 16, 16), TIFF)
    assert (tzyx.axis, tzyx.others, tzyx.stack_shape) == (1, (0,), (4, 3))
    rgb = slicing_for((4, 16, 16, 3), TIFF, axis=1, channel_axis=-1)
    assert (rgb.perm, rgb.view_channel_axis, rgb.output_shape(2)) == ((1, 3, 0, 2), 1, (8, 16, 32, 3))
    with pytest.raises(ValueError, match="not a spatial axis"):
        slicing_for((10, 12, 14, 3), nifti, axis=3)
    with pytest.raises(ValueError, match="for volumes"):
        slicing_for((16, 16), TIFF, axis=0)
    assert parse_slices("3:", 10) == list(range(3, 10)) and parse_slices(":-2", 10) == list(range(8))
    assert parse_slices(None, 4) == [0, 1, 2, 3] and parse_slices("7,1:3,-1,middle", 10) == [1, 2, 5, 7, 9]
    for bad, message in (("5:5", "selects no slice"), ("a:b", "not a list"), ("1:2:3", "not a list"),
                         ("10", "out of range")):
        with pytest.raises(ValueError, match=message):
            parse_slices(bad, 10)
    # x2 in-plane: voxel size halves, the volume's outer corner stays in place
    affine = np.diag([0.8, 0.8, 0.8, 1.0]); affine[:3, 3] = [-70, -60, -50]
    ras = slicing_for((8, 8, 8), ImageMeta("", "nifti", "float32", affine=affine), axis="axial")
    new = ras.output_affine(affine, 2)
    corner = [-0.5, -0.5, -0.5, 1]  # the outer edge of voxel 0 in voxel coordinates
    np.testing.assert_allclose(np.diag(new)[:3], [0.4, 0.4, 0.8])
    np.testing.assert_allclose(new @ corner, affine @ corner)
    assert ras.output_spacing((0.8, 0.8, 0.8), 2) == (0.4, 0.4, 0.8)


@pytest.mark.slow
def test_range_outside_is_untouched_and_reruns_skip(tmp_path):
    vol = _volume()
    out = tmp_path / "out.tif"
    report = process_volume(_config(), vol, TIFF, out, slices="1:4")
    result, meta = read_image(out)
    assert result.shape == vol.shape and result.dtype == np.float32
    np.testing.assert_array_equal(result[[0, 4]], vol[[0, 4]])
    assert np.abs(result[1:4] - vol[1:4]).mean() > 1.0
    assert report["processed_slices"] == [1, 2, 3] and report["skipped_slices"] == []
    assert [s["slice"] for s in report["slices"]] == [1, 2, 3]
    assert all(s["iterations"] == 3 and s["final_loss"] > 0 for s in report["slices"])
    assert not (work_folder(out) / "store.npy").exists()
    again = process_volume(_config(), vol, TIFF, out, slices="1:4")
    assert again["skipped_slices"] == [1, 2, 3] and again["processed_slices"] == [] and not again["written"]
    np.testing.assert_array_equal(read_image(out)[0], result)
    # a changed setting invalidates the record instead of mixing results
    changed = process_volume(_config(seed=1), vol, TIFF, out, slices="1:4")
    assert changed["processed_slices"] == [1, 2, 3] and changed["skipped_slices"] == []
    assert not np.array_equal(read_image(out)[0][1:4], result[1:4])


def test_cancelled_run_resumes_with_only_missing_slices(tmp_path):
    vol = _volume(6)
    reference = process_volume(_config(), vol, TIFF, tmp_path / "ref.tif")
    done = []

    def count(event):
        if isinstance(event, SliceDone):
            done.append(event.slice)

    out = tmp_path / "out.tif"
    first = process_volume(_config(), vol, TIFF, out, on_event=count, cancel=lambda: len(done) >= 2)
    assert not out.exists() and first["complete"] is False and first["output"] is None
    assert first["processed_slices"] == [0, 1] and first["missing_slices"] == [2, 3, 4, 5]
    record = json.loads((work_folder(out) / "record.json").read_text())
    assert sorted(record["done"]) == ["0", "1"]
    second = process_volume(_config(), vol, TIFF, out)
    assert second["skipped_slices"] == [0, 1] and second["processed_slices"] == [2, 3, 4, 5]
    assert [s["slice"] for s in second["slices"]] == list(range(6))
    np.testing.assert_allclose(read_image(out)[0], read_image(tmp_path / "ref.tif")[0], rtol=1e-5, atol=1e-3)
    assert reference["parameters"] == second["parameters"]


@pytest.mark.slow
def test_dask_cluster_matches_local_and_retries(tmp_path, monkeypatch):
    import napari_dip.batch.cluster as cluster
    vol = _volume(4)
    process_volume(_config(), vol, TIFF, tmp_path / "local.tif")
    flaky = tmp_path / "failed-once"
    real = cluster.restore_slices

    def fail_once_on_slice_2(config, slices, **kw):  # the first attempt at one slice crashes
        if abs(float(slices[0][0].mean()) - target) < 1e-6 and not flaky.exists():
            flaky.write_text("x")
            raise RuntimeError("worker lost")
        return real(config, slices, **kw)

    from napari_dip.arrays import Intensity
    target = float(Intensity.of(vol).to_unit(vol[2]).mean())
    monkeypatch.setattr(cluster, "restore_slices", fail_once_on_slice_2)
    events = []
    # One in-process worker: torch's global RNG (network initialisation) is shared by threads,
    # so real clusters run one single-threaded process per worker (see docs/batch.md).
    with open_client(workers=1, processes=False) as (client, threads):
        assert threads is None
        report = process_volume(_config(), vol, TIFF, tmp_path / "dask.tif", client=client, retries=1,
                                on_event=events.append)
    assert flaky.exists() and report["failed_slices"] == [] and report["complete"]
    assert sorted(report["processed_slices"]) == [0, 1, 2, 3]
    assert sum(isinstance(e, SliceDone) for e in events) == 4
    np.testing.assert_allclose(read_image(tmp_path / "dask.tif")[0], read_image(tmp_path / "local.tif")[0],
                               rtol=1e-5, atol=1e-3)


def test_dask_failure_after_its_retries_stops_the_run_and_output_not_written(tmp_path, monkeypatch):
    import napari_dip.batch.cluster as cluster
    calls = []

    def always_fails(config, slices, **kw):
        calls.append(len(slices))
        raise RuntimeError("out of memory")

    monkeypatch.setattr(cluster, "restore_slices", always_fails)
    events = []
    out = tmp_path / "dask.tif"
    with open_client(workers=1, processes=False) as (client, _):
        report = process_volume(_config(), _volume(6), TIFF, out, client=client, retries=1,
                                on_event=events.append)
    assert not out.exists() and not report["complete"]
    failed = [f["slice"] for f in report["failed_slices"]]
    assert failed and len(calls) <= 2 * 2 + 2  # bounded: 2 attempts of the failed chunk, the rest cancelled
    assert all("out of memory" in f["error"] and "after 2 attempt(s)" in f["error"] for f in report["failed_slices"])
    assert sorted(report["missing_slices"]) == list(range(6))
    assert sorted(e.slice for e in events if isinstance(e, SliceFailed)) == failed
    with pytest.raises(ValueError, match="not both"):
        with open_client(workers=1, scheduler="tcp://127.0.0.1:1"):
            pass


def test_nifti_4d_range_and_superres_geometry(tmp_path):
    import nibabel as nib
    rng = np.random.default_rng(2)
    data = (rng.random((16, 16, 3, 2)) * 500).astype(np.float32)  # x, y, z, t
    affine = np.diag([0.8, 0.8, 2.0, 1.0])
    affine[:3, 3] = [-6, -6, -2]
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "in.nii.gz"))
    vol, meta = read_image(tmp_path / "in.nii.gz")
    out = tmp_path / "den.nii.gz"
    report = process_volume(_config(), vol, meta, out, axis="axial", slices="1:2")
    assert report["processed_slices"] == [2, 3]  # z = 1 at both time points
    result, m2 = read_image(out)
    np.testing.assert_array_equal(result[:, :, [0, 2]], data[:, :, [0, 2]])
    assert np.abs(result[:, :, 1] - data[:, :, 1]).mean() > 1.0
    np.testing.assert_allclose(m2.affine, affine)
    sr = process_volume(make_config("superres", factor=2, iterations=2, stop="fixed"), vol, meta,
                        tmp_path / "sr.nii.gz", axis="axial", slices="0:1")
    result, m3 = read_image(tmp_path / "sr.nii.gz")
    assert sr["output_shape"] == [32, 32, 3, 2] and result.shape == (32, 32, 3, 2)
    assert m3.spacing[:3] == pytest.approx((0.4, 0.4, 2.0))
    corner = [-0.5, -0.5, -0.5, 1]
    np.testing.assert_allclose(m3.affine @ corner, affine @ corner)
    assert np.abs(result[:, :, 0]).mean() > 1.0 and not result[:, :, 1:].any()


def test_progress_lines_off_a_terminal_and_a_bar_on_one():
    import io

    from napari_dip.batch import VolumeStart
    from napari_dip.cli.common import VolumeProgress

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    for stream in (io.StringIO(), Terminal()):
        show = VolumeProgress("denoise", stream=stream)
        show(VolumeStart("a.tif", 3, 1))
        show(SliceDone(1, 0, 2, np.zeros((1, 8, 8)), {"slice": 1, "seconds": 2.0}))
        show(SliceFailed(2, "RuntimeError: boom"))
        show.close()
        text = stream.getvalue()
        assert "slice 2 failed: RuntimeError: boom" in text
        if isinstance(stream, Terminal):
            assert "\r" in text and "2/3 [" in text  # a tqdm bar counting slices
        else:
            assert text.splitlines()[0] == "denoise a.tif: 3 slice(s), 1 already done"
            assert "denoise a.tif: slice 1 done in 2.0 s (2/3, about" in text and "\r" not in text
