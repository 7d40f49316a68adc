"""File I/O: NIfTI and TIFF metadata round trips, output types, atomic writes, clear errors."""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from napari_dip.io import ImageMeta, mapped, plane_axis, read_image, write_image, write_json

T1 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mri" / "niimath_T1.nii.gz"
EM = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "em" / "isbi2012_train_volume.tif"



def _nifti(path: Path, data: np.ndarray, affine: np.ndarray) -> Path:
    img = nib.Nifti1Image(data, affine)
    img.header["descrip"] = b"napari-dip test"
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


LPS_PERMUTED = np.array([[0, 0, -0.5, 10], [-1.0, 0, 0, 20], [0, 2.0, 0, -5], [0, 0, 0, 1]])


def test_nifti_round_trip_keeps_affine_header_and_values(tmp_path):
    data = np.random.default_rng(0).normal(100, 20, (12, 10, 8)).astype(np.float32)
    src = _nifti(tmp_path / "in.nii.gz", data, LPS_PERMUTED)
    arr, meta = read_image(src)
    assert meta.format == "nifti" and meta.unit == "mm" and meta.axes == "XYZ"
    assert meta.spacing == pytest.approx((1.0, 2.0, 0.5))
    out = write_image(tmp_path / "out.nii.gz", arr * 2, meta)
    back, m2 = read_image(out)
    np.testing.assert_array_equal(back, data * 2)
    np.testing.assert_allclose(m2.affine, LPS_PERMUTED)
    assert m2.dtype == "float32" and m2.header["descrip"].tobytes().startswith(b"napari-dip test")


def test_nifti_input_type_is_written_with_scaling(tmp_path):
    data = np.linspace(-300, 900, 12 * 10 * 8, dtype=np.float32).reshape(12, 10, 8)
    src = _nifti(tmp_path / "in.nii", data.astype(np.int16), np.eye(4))
    arr, meta = read_image(src)
    out = write_image(tmp_path / "out.nii", data / 3.0, meta, dtype="input")
    back, m2 = read_image(out)
    assert m2.dtype == "int16"
    img = nib.load(str(out))
    assert img.dataobj.slope != 1.0  # the fractional values survive through the slope
    np.testing.assert_allclose(back, data / 3.0, atol=float(img.dataobj.slope))


def test_real_t1_orientation_gives_plane_axes():
    _, meta = read_image(T1)
    assert meta.affine.shape == (4, 4)
    assert [plane_axis(meta, n) for n in ("sagittal", "coronal", "axial")] == [0, 1, 2]
    permuted = dataclasses.replace(meta, affine=LPS_PERMUTED)
    assert [plane_axis(permuted, n) for n in ("sagittal", "coronal", "axial")] == [2, 0, 1]
    assert plane_axis(meta, "-1") == -1
    with pytest.raises(ValueError, match="axial, coronal, sagittal"):
        plane_axis(meta, "transverse")
    with pytest.raises(ValueError, match="needs a NIfTI"):
        plane_axis(ImageMeta("x.tif", "tiff", "uint8"), "axial")


def test_missing_nibabel_names_the_extra(tmp_path, monkeypatch):
    src = _nifti(tmp_path / "in.nii", np.zeros((4, 4, 4), np.float32), np.eye(4))
    monkeypatch.setitem(sys.modules, "nibabel", None)
    with pytest.raises(ImportError, match=r"pip install napari-dip\[mri\]"):
        read_image(src)


def test_tiff_stack_keeps_imagej_spacing_unit_and_type(tmp_path):
    stack, meta = read_image(EM)
    stack = stack[:3, :40, :48]
    assert meta.axes == "QYX" and meta.channel_axis is None
    meta = dataclasses.replace(meta, spacing=(50.0, 4.0, 4.0), unit="nm")
    out = write_image(tmp_path / "em.tif", stack, meta, dtype="input")
    back, m2 = read_image(out)
    np.testing.assert_array_equal(back, stack)
    assert (m2.dtype, m2.axes, m2.unit, m2.extra["imagej"]) == ("uint8", "ZYX", "nm", True)
    assert m2.spacing == pytest.approx((50.0, 4.0, 4.0))
    out = write_image(tmp_path / "em32.tif", stack / 2, m2)
    back, m3 = read_image(out)
    assert back.dtype == np.float32 and m3.spacing == pytest.approx((50.0, 4.0, 4.0))
    np.testing.assert_allclose(back, stack / 2)


def test_uncompressed_tiff_and_npy_inputs_are_read_only_maps_of_the_file(tmp_path):
    import tifffile
    vol = np.random.default_rng(2).integers(0, 4000, (4, 24, 32), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "plain.tif", vol, imagej=True, metadata={"axes": "ZYX"})
    tifffile.imwrite(tmp_path / "packed.tif", vol, compression="zlib", photometric="minisblack")
    tifffile.imwrite(tmp_path / "swapped.tif", vol, byteorder=">", photometric="minisblack")
    np.save(tmp_path / "plain.npy", vol)
    for name, in_place in (("plain.tif", True), ("plain.npy", True), ("packed.tif", False), ("swapped.tif", False)):
        arr, meta = read_image(tmp_path / name)
        # the same pixels and type as decoded; only where they live differs
        np.testing.assert_array_equal(arr, vol)
        assert arr.dtype == np.uint16 and meta.dtype == "uint16" and arr.dtype.isnative
        assert mapped(arr) is in_place, name
        if in_place:  # a volume is read as it is used, and the user's file cannot be written through it
            with pytest.raises(ValueError, match="read-only"):
                arr[0, 0, 0] = 1
    assert (tmp_path / "plain.tif").stat().st_size > vol.nbytes  # nothing was written back


def test_scans_read_a_block_at_a_time_and_keep_what_a_whole_read_gives(tmp_path, monkeypatch):
    import hashlib

    import napari_dip.io as io
    from napari_dip.arrays import Intensity, check_image
    from napari_dip.batch.store import settings_key
    monkeypatch.setattr(io, "BLOCK_BYTES", 4 * 24 * 32 * 2)  # four planes of the volume a block
    vol = np.random.default_rng(3).integers(5, 4000, (10, 24, 32), dtype=np.uint16)
    np.save(tmp_path / "v.npy", vol)
    mm, _ = read_image(tmp_path / "v.npy")
    parts = list(io.blocks(mm))
    assert [len(b) for b in parts] == [4, 4, 2] and np.array_equal(np.concatenate(parts), vol)
    assert Intensity.of(mm) == Intensity.of(np.array([vol.min(), vol.max()], np.uint16))
    # the resume digest is the one of the whole buffer, as before blocks: old stores still resume
    whole = hashlib.blake2b(vol.reshape(-1).view(np.uint8), digest_size=32).digest()
    old = hashlib.sha256(b"{}" + f"{vol.shape}{vol.dtype}".encode() + whole).hexdigest()
    assert settings_key({}, mm) == old
    bad = vol.astype(np.float32)
    bad[9, 23, 31] = np.nan  # in the last block
    with pytest.raises(ValueError, match="NaN or infinite"):
        check_image(bad)


def test_tiff_input_type_rounds_and_clips(tmp_path):
    meta = ImageMeta("", "tiff", "uint8")
    out = write_image(tmp_path / "c.tif", np.array([[-3.0, 2.6], [255.4, 300.0]] * 4).reshape(8, 2).repeat(4, 1),
                      meta, dtype="input")
    back, _ = read_image(out)
    assert back.dtype == np.uint8 and sorted(set(back.ravel().tolist())) == [0, 3, 255]


def test_rgb_tiff_stack_round_trip(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 255, (2, 16, 20, 3), dtype=np.uint8)
    meta = ImageMeta("", "tiff", "uint8", channel_axis=-1, spacing=(2.0, 0.5, 0.25), unit="um")
    back, m2 = read_image(write_image(tmp_path / "rgb.tif", rgb, meta, dtype="input"))
    np.testing.assert_array_equal(back, rgb)
    assert m2.channel_axis == -1 and m2.axes == "ZYXS" and m2.spacing == pytest.approx((2.0, 0.5, 0.25))


def test_writes_are_atomic_and_never_overwrite_the_input(tmp_path, monkeypatch):
    import tifffile
    target = tmp_path / "out.tif"
    write_image(target, np.ones((8, 8), np.float32))
    before = target.read_bytes()

    def broken(path, *args, **kwargs):
        Path(path).write_bytes(b"half a file")
        raise OSError("disk full")

    monkeypatch.setattr(tifffile, "imwrite", broken)
    with pytest.raises(OSError, match="disk full"):
        write_image(target, np.zeros((8, 8), np.float32))
    assert target.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]
    monkeypatch.undo()
    _, meta = read_image(target)
    with pytest.raises(ValueError, match="refusing to overwrite the input"):
        write_image(target, np.zeros((8, 8), np.float32), meta)
    with pytest.raises(ValueError, match="float32, input"):
        write_image(tmp_path / "x.tif", np.zeros((8, 8)), dtype="float64")
    with pytest.raises(ValueError, match=r"\.nii\.gz"):
        write_image(tmp_path / "x.mrc", np.zeros((8, 8)))


def test_write_json_is_atomic(tmp_path):
    path = write_json(tmp_path / "r" / "a.json", {"x": 1})
    with pytest.raises(TypeError):
        write_json(path, {"x": object()})
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"x":1}'
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]
