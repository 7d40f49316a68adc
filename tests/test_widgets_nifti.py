"""NIfTI in napari: open with voxel sizes as the layer scale, restore, save with the right affine."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.gui

T1 = Path(__file__).resolve().parents[2] / "shared" / "data" / "mri" / "niimath_T1.nii.gz"


def _nifti(path, shape=(12, 10, 8), zooms=(2.0, 3.0, 4.0)):
    import nibabel as nib

    rng = np.random.default_rng(0)
    data = rng.random(shape).astype(np.float32) * 100
    affine = np.array([[-zooms[0], 0, 0, 90.0], [0, zooms[1], 0, -126.0], [0, 0, zooms[2], -72.0], [0, 0, 0, 1]])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return data, affine


def test_viewer_opens_nifti_with_voxel_sizes_as_scale(make_napari_viewer, tmp_path):
    from napari.plugins._npe2 import get_readers
    from napari.settings import get_settings

    data, _ = _nifti(tmp_path / "tiny.nii.gz")
    assert "napari-dip" in get_readers(str(tmp_path / "tiny.nii.gz"))  # File > Open offers it
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "tiny.nii.gz"), plugin="napari-dip")[0]
    # With the reader remembered for .nii.gz (the "remember" box of napari's reader dialog),
    # opening without naming a plugin picks it as well.
    readers = get_settings().plugins.extension2reader
    get_settings().plugins.extension2reader = {**readers, "*.nii.gz": "napari-dip"}
    try:
        again = viewer.open(str(tmp_path / "tiny.nii.gz"), plugin=None)[0]
    finally:
        get_settings().plugins.extension2reader = readers
    np.testing.assert_array_equal(again.data, data)
    assert layer.name == "tiny"
    np.testing.assert_array_equal(layer.data, data)
    np.testing.assert_allclose(layer.scale, (2.0, 3.0, 4.0))
    assert tuple(layer.axis_labels) == ("L", "A", "S")
    assert str(layer.units[0]) == "millimeter"


def test_real_t1_opens(make_napari_viewer):
    import nibabel as nib

    if not T1.exists():
        pytest.fail(f"{T1} is missing: the real-data tests need ../shared/data next to the project")
    viewer = make_napari_viewer()
    layer = viewer.open(str(T1), plugin="napari-dip")[0]
    img = nib.load(str(T1))
    assert layer.data.shape == img.shape
    np.testing.assert_allclose(layer.scale, img.header.get_zooms()[:3], rtol=1e-6)


def test_save_as_nifti_round_trips_and_results_keep_scanner_positions(make_napari_viewer, tmp_path):
    import nibabel as nib
    from napari_dip._nifti import write_nifti

    data, affine = _nifti(tmp_path / "in.nii")
    viewer = make_napari_viewer()
    layer = viewer.open(str(tmp_path / "in.nii"), plugin="napari-dip")[0]
    out = tmp_path / "copy.nii.gz"
    viewer.layers.save(str(out), selected=False, plugin="napari-dip")
    back = nib.load(str(out))
    np.testing.assert_array_equal(np.asanyarray(back.dataobj), data)
    np.testing.assert_allclose(back.affine, affine)
    np.testing.assert_allclose(back.header.get_zooms(), (2.0, 3.0, 4.0))
    # A result super-resolved by 2 in the last two axes: scale / 2, translate - scale / 4.
    result = viewer.add_image(np.zeros((12, 20, 16), np.float32), scale=(2.0, 1.5, 2.0),
                              translate=(0.0, -0.75, -1.0), metadata={"nifti": layer.metadata["nifti"]})
    written = write_nifti(str(tmp_path / "sr.nii.gz"), result.data, {
        "scale": result.scale, "translate": result.translate, "metadata": result.metadata, "name": "sr"})
    sr = nib.load(written[0])
    np.testing.assert_allclose(sr.header.get_zooms(), (2.0, 1.5, 2.0))
    # Voxel centres land where the input's affine puts the same napari world point.
    for voxel in [(0, 0, 0), (3, 7, 11), (11, 19, 15)]:
        world = np.asarray(result.data_to_world(voxel))
        source_voxel = np.asarray(layer.world_to_data(world))
        np.testing.assert_allclose(sr.affine @ (*voxel, 1), affine @ (*source_voxel, 1), atol=1e-9)


def test_denoised_nifti_result_carries_the_header(open_widget, run_job, tmp_path):
    import nibabel as nib
    from napari_dip._nifti import write_nifti

    _, affine = _nifti(tmp_path / "vol.nii.gz", shape=(3, 24, 24), zooms=(1.0, 0.5, 0.5))
    viewer, widget = open_widget("denoise")
    src = viewer.open(str(tmp_path / "vol.nii.gz"), plugin="napari-dip")[0]
    widget.reset_choices()
    widget["image"].value = src
    widget["iterations"].value = 3
    widget["stopping"].value = "fixed"
    viewer.dims.set_point(0, 1.0)
    layer = run_job(widget)
    assert layer.data.shape == (1, 24, 24) and layer.metadata["nifti"]["affine"] is src.metadata["nifti"]["affine"]
    written = write_nifti(str(tmp_path / "den.nii.gz"), layer.data, {
        "scale": layer.scale, "translate": layer.translate, "metadata": layer.metadata})
    den = nib.load(written[0])
    np.testing.assert_allclose(den.affine[:3, 3], (affine @ (1, 0, 0, 1))[:3])  # slice 1 of the input
