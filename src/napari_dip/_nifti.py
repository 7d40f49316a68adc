"""napari reader and writer for NIfTI volumes (.nii, .nii.gz), through napari_dip.io.

The reader keeps the file's array order (for NIfTI: X, Y, Z), uses the voxel sizes as the
layer's scale, labels the axes with their orientation codes (e.g. R, A, S) and keeps the
affine and header in ``layer.metadata["nifti"]``. Results of the widgets carry that entry,
so saving a result (even super-resolved or a crop) writes the input's header with an affine
that maps its voxels to the same scanner positions.
"""
from __future__ import annotations

import numpy as np

from . import io


def get_reader(path):
    """npe2 reader hook: a reader for one NIfTI path, or None."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_nifti if io.extension(path) in io.NIFTI else None


def read_nifti(path) -> list[tuple]:
    """[(data, layer attributes, 'image')] for a NIfTI file."""
    if isinstance(path, (list, tuple)):
        path = path[0]
    data, meta = io.read_image(path)
    spacing = tuple(float(s) for s in meta.spacing[: data.ndim])
    codes = tuple(io._nibabel().aff2axcodes(meta.affine))
    labels = (codes + ("T", "U"))[: data.ndim]
    unit = meta.unit or "pixel"
    units = tuple(unit if a < 3 else "pixel" for a in range(data.ndim))
    nifti = {"affine": meta.affine, "header": meta.header, "dtype": meta.dtype, "path": meta.path,
             "scale": spacing, "translate": (0.0,) * data.ndim}
    name = str(path).replace("\\", "/").rsplit("/", 1)[-1]
    name = name[: -len(io.extension(name))]
    return [(data, {"name": name, "scale": spacing, "units": units, "axis_labels": labels,
                    "metadata": {"nifti": nifti}}, "image")]


def write_nifti(path: str, data, meta: dict) -> list[str]:
    """npe2 writer hook for one image layer; returns the path written.

    Float layers are written as float32, integer layers in their own type. With a
    ``metadata["nifti"]`` entry (from the reader, or a result of the widgets), the header is
    the input's and the affine maps this layer's voxels, with its scale and translate, to the
    scanner positions the input's affine gives them; otherwise the affine is the layer's scale
    and translate.
    """
    if meta.get("rgb"):
        raise ValueError(f"NIfTI holds grey volumes; save the RGB layer {meta.get('name')!r} as TIFF or PNG")
    arr = np.asarray(data)
    ndim = arr.ndim
    scale = np.asarray(meta.get("scale", (1.0,) * ndim), float)
    translate = np.asarray(meta.get("translate", (0.0,) * ndim), float)
    nifti = (meta.get("metadata") or {}).get("nifti")
    spatial = min(ndim, 3)
    voxels = np.eye(4)  # this layer's voxel -> the reference voxel (or world without a reference)
    if nifti is not None and len(nifti["scale"]) == ndim:
        ref_scale, ref_translate = np.asarray(nifti["scale"], float), np.asarray(nifti["translate"], float)
        voxels[range(spatial), range(spatial)] = (scale / ref_scale)[:spatial]
        voxels[:spatial, 3] = ((translate - ref_translate) / ref_scale)[:spatial]
        affine, header = np.asarray(nifti["affine"], float) @ voxels, nifti["header"]
    else:
        voxels[range(spatial), range(spatial)] = scale[:spatial]
        voxels[:spatial, 3] = translate[:spatial]
        affine, header = voxels, None
    integer = arr.dtype.kind in "ui"
    source = io.ImageMeta("", "nifti", str(arr.dtype), header=header, affine=affine)
    out = io.write_image(path, arr, source, spacing=tuple(float(s) for s in scale), affine=affine,
                         dtype="input" if integer else "float32")
    return [str(out)]
