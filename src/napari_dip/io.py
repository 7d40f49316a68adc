"""Reading and writing images: TIFF (tifffile), PNG/JPEG (imageio) and NPY; writes are atomic."""
from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

TIFF = (".tif", ".tiff")
PICTURES = (".png", ".jpg", ".jpeg", ".bmp")
NUMPY = (".npy",)


@dataclass
class ImageMeta:
    """What a file says about its image besides the pixels."""

    path: str
    format: str
    dtype: str
    channel_axis: int | None = None   # RGB(A) pictures and TIFFs: -1
    spacing: tuple[float, ...] | None = None  # per axis, for stacks with known voxel size
    unit: str | None = None
    extra: dict = field(default_factory=dict)


def file_format(path: str | os.PathLike) -> str:
    """'tiff', 'picture' or 'npy' from the file name; a clear error otherwise."""
    name = str(path).lower()
    for fmt, ends in (("tiff", TIFF), ("picture", PICTURES), ("npy", NUMPY)):
        if name.endswith(ends):
            return fmt
    raise ValueError(f"cannot tell the format of {path!r}; use one of "
                     f"{', '.join(TIFF + PICTURES + NUMPY)}")


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read an image and its metadata. RGB(A) images come back with channels last."""
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"no such file: {p}")
    fmt = file_format(p)
    if fmt == "npy":
        arr = np.load(p, allow_pickle=False)
        return arr, ImageMeta(str(p), fmt, str(arr.dtype))
    if fmt == "picture":
        import imageio.v3 as iio
        arr = np.asarray(iio.imread(p))
        channel_axis = -1 if arr.ndim == 3 and arr.shape[-1] in (3, 4) else None
        return arr, ImageMeta(str(p), fmt, str(arr.dtype), channel_axis=channel_axis)
    import tifffile
    with tifffile.TiffFile(p) as tif:
        arr = tif.asarray()
        page = tif.pages[0]
        rgb = page.photometric == tifffile.PHOTOMETRIC.RGB and arr.shape[-1] in (3, 4)
        meta = ImageMeta(str(p), fmt, str(arr.dtype), channel_axis=-1 if rgb else None)
        ij = tif.imagej_metadata or {}
        xres = page.tags.get("XResolution")
        if xres is not None and xres.value[0]:
            yres = page.tags["YResolution"].value
            sx = xres.value[1] / xres.value[0]
            sy = yres[1] / yres[0] if yres[0] else sx
            spacing = [sy, sx]
            if arr.ndim - (1 if rgb else 0) >= 3:
                spacing = [float(ij.get("spacing", 1.0))] * (arr.ndim - (1 if rgb else 0) - 2) + spacing
            meta.spacing = tuple(spacing)
            meta.unit = ij.get("unit")
        meta.extra = {"imagej": bool(ij)}
    return arr, meta


def _encode_picture(arr: np.ndarray, dtype: str) -> np.ndarray:
    """Round and clip to an integer type a picture format can hold (uint8 unless uint16)."""
    target = np.dtype(dtype if dtype in ("uint8", "uint16") else "uint8")
    info = np.iinfo(target)
    return np.clip(np.rint(arr), info.min, info.max).astype(target)


def write_image(path: str | os.PathLike, arr: np.ndarray, meta: ImageMeta | None = None, *,
                spacing: tuple[float, ...] | None = None) -> Path:
    """Write atomically (a temporary file in the same folder, then a rename).

    TIFF and NPY keep float32; pictures are rounded to the input's integer type (uint8 by
    default). ``spacing`` (per axis, Y and X last) is stored as TIFF resolution.
    """
    p = Path(path)
    fmt = file_format(p)
    if meta is not None and Path(meta.path).resolve() == p.resolve():
        raise ValueError(f"refusing to overwrite the input {p}; choose another output path")
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp" + p.suffix, dir=p.parent)
    os.close(fd)
    try:
        if fmt == "npy":
            np.save(tmp, arr)
        elif fmt == "picture":
            import imageio.v3 as iio
            iio.imwrite(tmp, _encode_picture(arr, meta.dtype if meta else "uint8"), extension=p.suffix)
        else:
            _write_tiff(tmp, arr, meta, spacing)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _write_tiff(tmp: str, arr: np.ndarray, meta: ImageMeta | None, spacing) -> None:
    import tifffile
    rgb = meta is not None and meta.channel_axis is not None and arr.shape[-1] in (3, 4)
    kwargs: dict = {"photometric": "rgb" if rgb else "minisblack"}
    spacing = spacing or (meta.spacing if meta else None)
    if spacing:
        kwargs["resolution"] = (1.0 / spacing[-1], 1.0 / spacing[-2])
        ij = {"unit": meta.unit} if meta and meta.unit else {}
        if len(spacing) > 2:
            ij["spacing"] = spacing[-3]
        if ij and not rgb and arr.dtype == np.float32:
            kwargs["imagej"] = True
            kwargs["metadata"] = {**ij, "axes": "ZYX"[-arr.ndim:] if arr.ndim <= 3 else None}
            if arr.ndim > 3:
                kwargs.pop("imagej"); kwargs.pop("metadata")
    tifffile.imwrite(tmp, np.ascontiguousarray(arr.astype(np.float32, copy=False)), **kwargs)
