"""Reading and writing images: TIFF stacks (tifffile), NIfTI (nibabel), PNG/JPEG (imageio), NPY,
Zarr and OME-Zarr (zarr; read lazily).

Metadata that matters for volumes travels in :class:`ImageMeta`: voxel spacing and unit
(TIFF resolution and ImageJ tags, NIfTI zooms, OME-Zarr scales), axis letters, for NIfTI the
affine and the full header, for Zarr its attributes. Every write is atomic (a temporary file or
folder beside the output, then a rename) and refuses to overwrite the file it was read from.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import json
import mmap
import os
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

TIFF = (".tif", ".tiff")
NIFTI = (".nii", ".nii.gz")
PICTURES = (".png", ".jpg", ".jpeg", ".bmp")
NUMPY = (".npy",)
ZARR = (".ome.zarr", ".zarr")
FORMATS = (("nifti", NIFTI), ("tiff", TIFF), ("picture", PICTURES), ("npy", NUMPY), ("zarr", ZARR))
OUTPUT_DTYPES = ("float32", "input")
#: Anatomical plane -> the axis codes (nibabel.aff2axcodes) of the axis normal to it.
PLANES = {"axial": ("S", "I"), "coronal": ("A", "P"), "sagittal": ("L", "R")}
_IMAGEJ_AXES = "TZCYXS"
_IMAGEJ_DTYPES = ("uint8", "uint16", "float32")


@dataclass
class ImageMeta:
    """What a file says about its image besides the pixels."""

    path: str
    format: str
    dtype: str
    channel_axis: int | None = None   # RGB(A) pictures and TIFFs: -1; ImageJ C axis: its index
    spacing: tuple[float, ...] | None = None  # per non-channel axis, in array order
    unit: str | None = None
    axes: str | None = None            # one letter per axis, e.g. 'ZYX', 'TZCYX', 'XYZ' (NIfTI)
    affine: np.ndarray | None = None   # NIfTI voxel -> world (4, 4)
    header: Any = None                 # NIfTI header, copied into outputs
    alpha: bool = False                # the last of 4 channels is opacity (RGBA): carried, not fitted
    extra: dict = field(default_factory=dict)


def extension(path: str | os.PathLike) -> str:
    """The file's extension as this module knows it ('.nii.gz' counts as one)."""
    name = str(path).lower()
    for _, ends in FORMATS:
        for end in sorted(ends, key=len, reverse=True):
            if name.endswith(end):
                return end
    return Path(name).suffix


def file_format(path: str | os.PathLike) -> str:
    """'nifti', 'tiff', 'picture', 'npy' or 'zarr' from the file name; a clear error otherwise."""
    name = str(path).lower()
    for fmt, ends in FORMATS:
        if name.endswith(ends):
            return fmt
    known = ", ".join(e for _, ends in FORMATS for e in ends)
    raise ValueError(f"cannot tell the format of {path!r}; use one of {known}")


def _nibabel():
    try:
        import nibabel
    except ImportError as err:
        raise ImportError("reading or writing NIfTI needs nibabel: pip install napari-dip[mri]") from err
    return nibabel


def _zarr():
    try:
        import zarr
    except ImportError as err:
        raise ImportError("reading or writing Zarr needs zarr: pip install napari-dip[zarr]") from err
    return zarr


def is_zarr(path: str | os.PathLike) -> bool:
    """Whether the name is a Zarr store's (a folder ending in .zarr)."""
    return str(path).lower().rstrip("/").endswith(ZARR)


def read_image(path: str | os.PathLike) -> tuple[np.ndarray, ImageMeta]:
    """Read an image and its metadata. RGB(A) images come back with channels last.

    Zarr comes back as a lazy ``zarr.Array`` (index it to read a part); for OME-Zarr it is
    the full-resolution level, with the axes, channel axis, voxel size and unit of the metadata.
    NPY files and TIFFs whose pixels are stored uncompressed in one block come back as
    read-only memory maps of the file (:func:`mapped`): a volume is read as it is used, never
    held in RAM whole, and cannot be written to; other files are decoded into memory.
    A file that cannot be decoded (damaged, truncated, another format than its name says, a
    pickled NumPy object array) raises :class:`UnreadableImage` with one line naming the
    problem and the fix.
    """
    p = Path(path)
    if not (p.is_dir() if is_zarr(p) else p.is_file()):
        raise FileNotFoundError(f"no such file: {p}")
    fmt = file_format(p)
    try:
        return _READERS[fmt](p)
    except (ImportError, UnreadableImage):
        raise
    except Exception as err:  # noqa: BLE001 - any decoder failure becomes one clear line
        raise UnreadableImage(_unreadable(p, fmt, err)) from None


class UnreadableImage(ValueError):
    """An input file that cannot be decoded as the image its name says it is."""


#: Leading bytes of each format, to tell a user what a misnamed file really is.
_MAGIC = ((b"\x89PNG", "a PNG", ".png"), (b"\xff\xd8\xff", "a JPEG", ".jpg"), (b"II*\x00", "a TIFF", ".tif"),
          (b"MM\x00*", "a TIFF", ".tif"), (b"II+\x00", "a BigTIFF", ".tif"), (b"MM\x00+", "a BigTIFF", ".tif"),
          (b"\x93NUMPY", "a NumPy", ".npy"), (b"\x1f\x8b", "a gzip-compressed", ".nii.gz"),
          (b"BM", "a BMP", ".bmp"))
_NAMES = {"tiff": "a TIFF", "nifti": "a NIfTI", "picture": "a picture", "npy": "a NumPy", "zarr": "a Zarr"}


def _unreadable(p: Path, fmt: str, err: Exception) -> str:
    reason = " ".join(str(err).split())[:160] or type(err).__name__
    if fmt == "npy" and ("pickle" in reason.lower() or "python objects" in reason.lower()):
        return (f"{p.name} holds Python objects (a pickled object array), not pixel values; napari-dip "
                "never loads pickles (they can run code); save the image as a numeric array, e.g. "
                "np.save(path, image.astype(np.float32))")
    head = b""
    if p.is_file():
        with open(p, "rb") as fh:
            head = fh.read(348)
    if not head:
        return f"cannot read {p.name}: the file is empty; copy it again from its source"
    looks = next(((kind, ext) for magic, kind, ext in _MAGIC if head.startswith(magic)), None)
    if head[344:347] in (b"n+1", b"ni1", b"n+2"):
        looks = ("an uncompressed NIfTI", ".nii")
    own = {".tiff": ".tif", ".jpeg": ".jpg"}.get(extension(p), extension(p))
    if looks is not None and looks[1] != own:
        stem = p.name[: len(p.name) - len(extension(p))]
        return (f"cannot read {p.name}: its name says {_NAMES.get(fmt, fmt)} file but it holds {looks[0]} file; "
                f"rename it to {stem}{looks[1]}")
    return (f"cannot read {p.name} as {_NAMES.get(fmt, fmt)} file ({reason}); it is damaged or incomplete "
            "(e.g. a truncated copy or download): copy it again from its source")


def _memory_map(arr) -> np.memmap | None:
    """The memory map ``arr`` is (a view of), or None for pixels in RAM."""
    while isinstance(arr, np.ndarray):
        if isinstance(arr, np.memmap) and getattr(arr, "_mmap", None) is not None:
            return arr
        arr = arr.base
    return None


def mapped(arr: np.ndarray) -> bool:
    """True when ``arr`` is (a view of) a memory map of a file rather than pixels in RAM."""
    return _memory_map(arr) is not None


def _read_npy(p: Path) -> tuple[np.ndarray, ImageMeta]:
    arr = np.load(p, allow_pickle=False, mmap_mode="r")
    if not arr.dtype.isnative:  # other-endian data: decoded into native values in memory
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr, ImageMeta(str(p), "npy", str(arr.dtype))


def _read_picture(p: Path) -> tuple[np.ndarray, ImageMeta]:
    import imageio.v3 as iio
    arr = np.asarray(iio.imread(p))
    channel_axis = -1 if arr.ndim == 3 and arr.shape[-1] in (3, 4) else None
    return arr, ImageMeta(str(p), "picture", str(arr.dtype), channel_axis=channel_axis,
                          alpha=channel_axis is not None and arr.shape[-1] == 4)


def _read_nifti(p: Path) -> tuple[np.ndarray, ImageMeta]:
    nib = _nibabel()
    img = nib.load(str(p))
    arr = np.asanyarray(img.dataobj)  # applies scl_slope / scl_inter when the file has them
    header = img.header.copy()
    unit = header.get_xyzt_units()[0]
    spacing = tuple(float(z) for z in header.get_zooms()[: arr.ndim])
    return arr, ImageMeta(str(p), "nifti", str(img.get_data_dtype()), spacing=spacing,
                          unit=None if unit == "unknown" else unit, axes="XYZTU"[: arr.ndim],
                          affine=np.array(img.affine, dtype=np.float64), header=header)


def _read_tiff(p: Path) -> tuple[np.ndarray, ImageMeta]:
    import tifffile
    with tifffile.TiffFile(p) as tif:
        series = tif.series[0]
        arr = _tiff_pixels(p, series)
        axes = series.axes if len(series.axes) == arr.ndim else None
        page = tif.pages[0]
        rgb = page.photometric == tifffile.PHOTOMETRIC.RGB
        if rgb and axes and "S" in axes and arr.shape[axes.index("S")] in (3, 4) and not axes.endswith("S"):
            at = axes.index("S")  # planar RGB (samples first): one colour image, channels last
            arr, axes = np.moveaxis(arr, at, -1), axes[:at] + axes[at + 1:] + "S"
        rgb = rgb and arr.shape[-1] in (3, 4)
        channel_axis = -1 if rgb else (axes.index("C") if axes and "C" in axes else None)
        alpha = rgb and arr.shape[-1] == 4 and bool(page.extrasamples)
        ij = tif.imagej_metadata or {}
        meta = ImageMeta(str(p), "tiff", str(arr.dtype), channel_axis=channel_axis, axes=axes, alpha=alpha,
                         extra={"imagej": bool(ij)})
        xres, yres = page.tags.get("XResolution"), page.tags.get("YResolution")
        if xres is None or not xres.value[0]:
            return arr, meta
        sx = xres.value[1] / xres.value[0]
        sy = yres.value[1] / yres.value[0] if yres is not None and yres.value[0] else sx
        n_spatial = arr.ndim - (channel_axis is not None)
        other = [a for a in (axes or "Q" * arr.ndim) if a not in "CS"][: max(n_spatial - 2, 0)]
        steps = {"Z": float(ij.get("spacing", 1.0)), "T": float(ij.get("finterval", 1.0))}
        meta.spacing = tuple(steps.get(a, 1.0) for a in other) + (sy, sx)
        unit_tag = page.tags.get("ResolutionUnit")
        units = {2: "inch", 3: "cm"}
        meta.unit = ij.get("unit") or (units.get(int(unit_tag.value)) if unit_tag is not None else None)
    return arr, meta


def _tiff_pixels(p: Path, series) -> np.ndarray:
    """A TIFF series' pixels: a read-only memory map when they lie uncompressed in one block
    of the file in native byte order, else decoded into memory."""
    import tifffile
    if series.dataoffset is not None:
        try:
            arr = tifffile.memmap(p, series=0, mode="r")
        except ValueError:  # tifffile found it not mappable after all
            arr = None
        if arr is not None and arr.shape == series.shape and arr.dtype.isnative:
            return arr
    return series.asarray()


def _ome(attrs: dict) -> dict:
    """The OME-Zarr metadata of a group's attributes (0.5 nests it under 'ome')."""
    return attrs.get("ome", attrs)


def open_zarr(path: str | os.PathLike, mode: str = "r"):
    """The array at ``path``: a Zarr array, or level 0 of an OME-Zarr image."""
    zarr = _zarr()
    node = zarr.open(str(path), mode=mode)
    if isinstance(node, zarr.Array):
        return node
    multiscales = _ome(node.attrs.asdict()).get("multiscales")
    if not multiscales:
        raise ValueError(f"{path} is a Zarr group without OME-Zarr 'multiscales' metadata; "
                         f"give the path of an array inside it")
    return node[multiscales[0]["datasets"][0]["path"]]


def _transform(transforms: list | None, kind: str, ndim: int, default: float) -> list[float]:
    for t in transforms or []:
        if t.get("type") == kind and kind in t:
            return [float(v) for v in t[kind]]
    return [default] * ndim


def _read_zarr(p: Path):
    zarr = _zarr()
    node = zarr.open(str(p), mode="r")
    attrs = node.attrs.asdict()
    zarr_format = int(getattr(node.metadata, "zarr_format", 2))
    arr = open_zarr(p)
    meta = ImageMeta(str(p), "zarr", str(arr.dtype), extra={"attrs": attrs, "zarr_format": zarr_format})
    if isinstance(node, zarr.Array):
        return arr, meta
    ms = _ome(attrs)["multiscales"][0]
    axes = [a if isinstance(a, dict) else {"name": a} for a in ms.get("axes") or []]
    if len(axes) == arr.ndim:
        kinds = [a.get("type") or {"c": "channel", "t": "time"}.get(a["name"], "space") for a in axes]
        meta.channel_axis = kinds.index("channel") if "channel" in kinds else None
        meta.axes = "".join(a["name"][:1].upper() for a in axes)
        meta.unit = next((a["unit"] for a, k in zip(axes, kinds) if k == "space" and a.get("unit")), None)
    level = _transform(ms["datasets"][0].get("coordinateTransformations"), "scale", arr.ndim, 1.0)
    overall = _transform(ms.get("coordinateTransformations"), "scale", arr.ndim, 1.0)
    scale = [a * b for a, b in zip(level, overall)]
    meta.spacing = tuple(s for a, s in enumerate(scale) if a != meta.channel_axis)
    meta.extra["ome"] = True
    return arr, meta


_READERS = {"zarr": lambda p: _read_zarr(p), "npy": _read_npy, "picture": _read_picture,
            "nifti": lambda p: _read_nifti(p), "tiff": lambda p: _read_tiff(p)}


def _ome_attrs(meta: ImageMeta, ndim: int, spacing: tuple[float, ...] | None) -> dict:
    """The input's OME-Zarr attributes for an output of level 0 only, voxel size ``spacing``.

    The outer edge of the image stays in place: a translation moves by half the change of
    the voxel size. Lower-resolution levels are not written (they would be stale).
    """
    attrs = copy.deepcopy(meta.extra["attrs"])
    ms = _ome(attrs)["multiscales"][0]
    level = ms["datasets"][0]
    transforms = level.get("coordinateTransformations") or []
    old = _transform(transforms, "scale", ndim, 1.0)
    new = list(old)
    if spacing and meta.spacing:
        plain = [a for a in range(ndim) if a != meta.channel_axis]
        for a, before, after in zip(plain, meta.spacing, spacing):
            new[a] = old[a] * after / before
    shift = _transform(transforms, "translation", ndim, 0.0)
    shift = [t + (n - o) / 2 for t, n, o in zip(shift, new, old)]
    level = {**level, "path": "0", "coordinateTransformations": [{"type": "scale", "scale": new}]}
    if any(shift) or any(t.get("type") == "translation" for t in transforms):
        level["coordinateTransformations"].append({"type": "translation", "translation": shift})
    ms["datasets"] = [level]
    return attrs


def create_zarr(path: str | os.PathLike, shape: tuple[int, ...], dtype, meta: ImageMeta | None = None, *,
                spacing: tuple[float, ...] | None = None, chunks: tuple[int, ...] | None = None):
    """A new Zarr array of zeros at ``path`` (replacing whatever is there).

    An OME-Zarr input gives an OME-Zarr output (its metadata with level 0 only, at voxel size
    ``spacing`` when given); a Zarr array input gives an array with its attributes; otherwise
    a plain Zarr array. The input's Zarr format (2 or 3) is kept; new stores use 3.
    """
    zarr = _zarr()
    source = meta.extra if meta is not None and meta.format == "zarr" else {}
    fmt = source.get("zarr_format", 3)
    options = dict(shape=tuple(shape), chunks=tuple(chunks or shape), dtype=np.dtype(dtype), fill_value=0)
    if fmt == 2:  # OME-Zarr 0.4 asks for '/' between chunk indices
        options["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    if source.get("ome"):
        group = zarr.open_group(str(path), mode="w", zarr_format=fmt)
        group.attrs.update(_ome_attrs(meta, len(shape), spacing))
        return group.create_array("0", **options)
    return zarr.create_array(str(path), zarr_format=fmt, overwrite=True,
                             attributes=dict(source.get("attrs") or {}), **options)


def move_into_place(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename the finished folder ``tmp`` to ``path``, replacing an older ``path``.

    The older one is first renamed aside, so at every moment one complete version exists.
    """
    p = Path(path)
    old = None
    if p.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".old", dir=p.parent))
        os.replace(p, old / p.name)
    os.replace(tmp, p)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return p


def plane_axis(meta: ImageMeta, axis: int | str) -> int:
    """The array axis to slice along: an index, or axial/coronal/sagittal from a NIfTI affine."""
    if isinstance(axis, str) and axis.lstrip("-").isdigit():
        axis = int(axis)
    if isinstance(axis, int):
        return axis
    name = axis.lower()
    if name not in PLANES:
        raise ValueError(f"unknown axis {axis!r}; use an integer index or one of {', '.join(PLANES)}")
    if meta.affine is None:
        raise ValueError(f"axis {axis!r} needs a NIfTI file (its affine gives the orientation); "
                         f"{Path(meta.path).name} has none, so give the axis as an index")
    codes = _nibabel().aff2axcodes(meta.affine)
    for index, code in enumerate(codes):
        if code in PLANES[name]:
            return index
    raise ValueError(f"cannot find the {name} axis in orientation {''.join(codes)}")


#: Integer types and channel counts each picture format can hold.
_PICTURE_LIMITS = {".png": (("uint8", "uint16"), (1, 2, 3, 4)), ".jpg": (("uint8",), (1, 3)),
                   ".jpeg": (("uint8",), (1, 3)), ".bmp": (("uint8",), (1, 3, 4))}


def stored_dtype(path: str | os.PathLike, meta: ImageMeta | None, dtype: str) -> np.dtype:
    """The type :func:`write_image` stores for ``path``: pictures keep the input's integer type,
    other formats float32 or (``dtype='input'``) the input's."""
    if file_format(path) == "picture":
        return np.dtype(meta.dtype if meta is not None else "uint8")
    return np.dtype("float32" if dtype == "float32" or meta is None else meta.dtype)


def check_output_format(path: str | os.PathLike, shape: tuple[int, ...], stored: np.dtype,
                        channel_axis: int | None) -> None:
    """Refuse, in one line, an output format that cannot hold an image of ``shape`` stored as
    ``stored`` (see :func:`stored_dtype`): pictures hold one 2D image of 8-bit (PNG also
    16-bit) integers, JPEG no alpha channel."""
    p = Path(path)
    if file_format(p) != "picture":
        return
    ext = extension(p)
    types, counts = _PICTURE_LIMITS.get(ext, (("uint8",), (1, 3)))
    name = ext.lstrip(".").upper()
    channels = 1 if channel_axis is None else shape[channel_axis]
    planes = len(shape) - (channel_axis is not None)
    if planes != 2:
        raise ValueError(f"{p.name}: a {name} file holds one 2D image, the result has shape {tuple(shape)}; "
                         "write a .tif, .nii.gz, .npy or .zarr instead")
    if str(stored) not in types:
        kind = "16-bit" if str(stored) == "uint16" else str(stored)
        raise ValueError(f"{p.name}: {name} cannot hold {kind} values (only {' or '.join(types)}); "
                         f"write a .tif or .npy to keep them{'' if ext != '.jpg' else ' (or a 16-bit .png)'}")
    if channels not in counts:
        what = "an alpha channel (RGBA)" if channels == 4 else f"{channels} channels"
        raise ValueError(f"{p.name}: {name} cannot hold {what}; write a .png or .tif instead")


def check_writable(path: str | os.PathLike) -> None:
    """Refuse, in one line, an output whose folder cannot be written (read-only, no permission):
    a probe file is created in the nearest existing folder and removed again."""
    folder = Path(path).resolve().parent
    while not folder.exists():
        folder = folder.parent
    if not folder.is_dir():
        raise ValueError(f"cannot write {path}: {folder} is a file, not a folder")
    try:
        fd, probe = _temp_file(folder / ".napari-dip-probe", ".tmp")
    except OSError as err:
        raise ValueError(f"cannot write into {folder} ({os.strerror(err.errno) if err.errno else err}); "
                         "choose an output in a folder you can write to") from None
    os.close(fd)
    os.unlink(probe)


def write_image(path: str | os.PathLike, arr: np.ndarray, meta: ImageMeta | None = None, *,
                spacing: tuple[float, ...] | None = None, affine: np.ndarray | None = None,
                dtype: str = "float32") -> Path:
    """Write ``arr`` atomically (a temporary file in the same folder, then a rename).

    ``dtype``: 'float32' (TIFF, NIfTI, NPY) or 'input' (the type ``meta`` read, rounded and
    clipped; NIfTI stores integers with a slope and intercept). Pictures are always rounded
    to their integer type. ``spacing`` (per non-channel axis) and ``affine`` (NIfTI) default
    to the input's from ``meta``; the NIfTI header is copied from ``meta`` (its zooms follow
    the affine unless ``spacing`` is given).
    """
    if dtype not in OUTPUT_DTYPES:
        raise ValueError(f"unknown output dtype {dtype!r}; choose one of {', '.join(OUTPUT_DTYPES)}")
    p = Path(path)
    fmt = file_format(p)
    if meta is not None and meta.path and Path(meta.path).resolve() == p.resolve():
        raise ValueError(f"refusing to overwrite the input {p}; choose another output path")
    p.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "zarr":
        _write_zarr(p, arr, meta, spacing, dtype)
        return p
    fd, tmp = _temp_file(p, ".tmp" + extension(p))
    os.close(fd)
    try:
        if fmt == "npy":
            np.save(tmp, cast_output(arr, meta, dtype))
        elif fmt == "picture":
            import imageio.v3 as iio
            target = stored_dtype(p, meta, dtype)
            check_output_format(p, arr.shape, target, None if meta is None else meta.channel_axis)
            iio.imwrite(tmp, _round_clip(arr, target), extension=extension(p))
        elif fmt == "nifti":
            _write_nifti(tmp, arr, meta, spacing, affine, dtype)
        else:
            _write_tiff(tmp, cast_output(arr, meta, dtype), meta, spacing)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p


def _write_zarr(p: Path, arr: np.ndarray, meta: ImageMeta | None, spacing, dtype: str) -> None:
    tmp = tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; the output follows the umask
    try:
        data = cast_output(arr, meta, dtype)
        create_zarr(tmp, data.shape, data.dtype, meta, spacing=spacing)[...] = data
        move_into_place(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _round_clip(arr: np.ndarray, target: np.dtype) -> np.ndarray:
    info = np.iinfo(target)
    return np.clip(np.rint(arr), info.min, info.max).astype(target)


def cast_output(arr: np.ndarray, meta: ImageMeta | None, dtype: str) -> np.ndarray:
    """float32, or the input's type (integers rounded and clipped to their range)."""
    if dtype == "float32" or meta is None:
        return np.asarray(arr, dtype=np.float32)
    target = np.dtype(meta.dtype)
    return _round_clip(arr, target) if target.kind in "ui" else np.asarray(arr, dtype=target)


def _write_nifti(tmp: str, arr: np.ndarray, meta: ImageMeta | None, spacing, affine, dtype: str) -> None:
    nib = _nibabel()
    header = meta.header.copy() if meta is not None and meta.header is not None else None
    if affine is None:
        affine = meta.affine if meta is not None and meta.affine is not None else np.eye(4)
    klass = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    data = np.asarray(arr, dtype=np.float32)
    img = klass(data, affine, header=header)
    # The input's type with a slope/intercept nibabel computes; float32 otherwise.
    img.set_data_dtype(np.dtype(meta.dtype) if dtype == "input" and meta is not None else np.float32)
    if dtype == "float32":
        img.header.set_slope_inter(1.0, 0.0)
    if spacing:  # otherwise the zooms come from the affine and the copied header
        img.header.set_zooms(tuple(spacing)[: data.ndim] + img.header.get_zooms()[len(spacing): data.ndim])
    nib.save(img, tmp)


def _imagej_axes(shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta | None) -> str | None:
    """Axis letters ImageJ accepts for an array of ``shape`` and ``dtype`` (a subsequence of TZCYXS), or None."""
    ndim = len(shape)
    if str(dtype) not in _IMAGEJ_DTYPES:
        return None
    if meta is not None and meta.axes and len(meta.axes) == ndim and _is_imagej(meta.axes):
        return None if meta.axes.endswith("S") and dtype != np.uint8 else meta.axes
    rgb = meta is not None and meta.channel_axis is not None and shape[-1] in (3, 4)
    if rgb and dtype != np.uint8:
        return None  # ImageJ holds RGB as 8-bit only: a plain RGB TIFF then
    core = "YXS" if rgb else "YX"
    n = ndim - len(core)
    return "TZ"[2 - n:] + core if 0 <= n <= 2 else None


def _is_imagej(axes: str) -> bool:
    letters = iter(_IMAGEJ_AXES)
    return all(a in letters for a in axes)


def _tiff_options(shape: tuple[int, ...], dtype: np.dtype, meta: ImageMeta | None, spacing) -> dict:
    """tifffile.imwrite's keywords for an image of ``shape`` and ``dtype``: ImageJ axes when
    ImageJ can hold it, RGB, resolution, unit and Z spacing from ``spacing`` or ``meta``."""
    ndim = len(shape)
    axes = _imagej_axes(shape, dtype, meta)
    rgb = shape[-1] in (3, 4) and ((axes or "").endswith("S") or (
        meta is not None and meta.channel_axis is not None and meta.channel_axis % ndim == ndim - 1))
    metadata: dict = {"axes": axes} if axes else {}
    unit = meta.unit if meta is not None else None
    kwargs: dict = {"photometric": "rgb" if rgb else "minisblack",
                    "resolutionunit": {"inch": "INCH", "cm": "CENTIMETER"}.get(unit, "NONE")}
    spacing = spacing or (meta.spacing if meta is not None else None)
    if spacing:
        kwargs["resolution"] = (1.0 / spacing[-1], 1.0 / spacing[-2])
        if unit:
            metadata["unit"] = unit
        z = [s for a, s in zip([a for a in (axes or "") if a not in "CSYX"], spacing[:-2]) if a == "Z"]
        if z:
            metadata["spacing"] = z[0]
    return dict(imagej=axes is not None, metadata=metadata, **kwargs)


def _write_tiff(tmp: str, arr: np.ndarray, meta: ImageMeta | None, spacing) -> None:
    import tifffile
    tifffile.imwrite(tmp, np.ascontiguousarray(arr), **_tiff_options(arr.shape, arr.dtype, meta, spacing))


#: Formats :func:`open_streamed` writes into a memory map of the file itself.
STREAMED = ("tiff", "npy")


def streams(path: str | os.PathLike, meta: ImageMeta | None) -> bool:
    """Whether an output at ``path`` can be filled slice by slice on disk (:func:`open_streamed`):
    TIFF and NPY, except images with an alpha channel (joined on in memory)."""
    return file_format(path) in STREAMED and not (meta is not None and meta.alpha)


@contextlib.contextmanager
def open_streamed(path: str | os.PathLike, shape: tuple[int, ...], dtype, meta: ImageMeta | None = None, *,
                  spacing: tuple[float, ...] | None = None) -> Iterator[np.ndarray]:
    """A new TIFF or NPY file at ``path`` as a writable memory map of ``shape`` and ``dtype``, to
    fill slice by slice: an output as large as the disk allows, never held in RAM.

    The file is made beside ``path`` under a temporary name with its blocks allocated (a full
    disk is an error here, not a crash when a page is written) and renamed to ``path`` when
    the block ends without an error; on an error, Ctrl-C or a cancel it is removed and
    ``path`` is untouched. It is byte for byte the file :func:`write_image` writes for the same
    values (same tags and metadata), with values given in ``dtype`` (see :func:`cast_output`).
    Call :func:`release_pages` on it after each slice to keep the resident memory small.
    """
    p = Path(path)
    fmt = file_format(p)
    if fmt not in STREAMED:
        raise ValueError(f"{p.name}: only {', '.join(STREAMED)} files are written through a memory map")
    if meta is not None and meta.path and Path(meta.path).resolve() == p.resolve():
        raise ValueError(f"refusing to overwrite the input {p}; choose another output path")
    p.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(dtype)
    fd, tmp = _temp_file(p, ".tmp" + extension(p))
    os.close(fd)
    try:
        if fmt == "npy":
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        else:
            import tifffile
            offset, _ = tifffile.imwrite(tmp, shape=tuple(shape), dtype=dtype, returnoffset=True,
                                         **_tiff_options(tuple(shape), dtype, meta, spacing))
            array = np.memmap(tmp, dtype=dtype, mode="r+", offset=offset, shape=tuple(shape))
        reserve(tmp, f"the output {p.name}")
        yield array
        array.flush()
        del array
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def release_pages(array: np.ndarray) -> None:
    """Write a memory map's changed pages to its file and drop its pages from this process's
    resident memory (the data stays in the file and the OS cache): walking a large memory-mapped
    array slice by slice then keeps one slice resident, not the whole. ``array`` may be a view
    of the map. Other arrays: nothing."""
    owner = _memory_map(array)
    if owner is None:
        return
    mm = owner._mmap
    if owner.flags.writeable:
        mm.flush()
    if hasattr(mm, "madvise"):  # not on Windows
        mm.madvise(mmap.MADV_DONTNEED)


BLOCK_BYTES = 64 * 2 ** 20  # what a scan of a large array reads at a time


def blocks(array: np.ndarray, nbytes: int | None = None) -> Iterator[np.ndarray]:
    """``array`` in consecutive blocks along its first axis of about ``nbytes`` each (default
    :data:`BLOCK_BYTES`; a small or 0-d array whole). A memory map's pages are dropped after
    each block, so that scanning a mapped volume (its range, its digest) keeps one block
    resident, not the volume."""
    nbytes = BLOCK_BYTES if nbytes is None else nbytes
    if array.ndim == 0 or array.nbytes <= nbytes:
        yield array
        return
    step = max(1, nbytes // max(1, array[0].nbytes))
    for start in range(0, array.shape[0], step):
        yield array[start:start + step]
        release_pages(array)


def reserve(path: str | os.PathLike, what: str) -> None:
    """Allocate a file's blocks now, so that a full disk is an error here and not a crash
    (SIGBUS) when a memory-mapped page is written later."""
    if not hasattr(os, "posix_fallocate"):  # macOS, Windows: the first write tells
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, os.fstat(fd).st_size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # some file systems cannot tell
            raise OSError(err.errno, f"no room on the disk for {what} {path} "
                                     f"({os.fstat(fd).st_size / 1e6:.1f} MB): {os.strerror(err.errno)}") from None
    finally:
        os.close(fd)


def _temp_file(p: Path, suffix: str) -> tuple[int, str]:
    """A new temporary file beside ``p`` (descriptor, path), created with the user's umask
    (``tempfile.mkstemp`` would make it private, 0600, and the rename would keep that)."""
    while True:
        tmp = str(p.parent / f".{p.name}.{secrets.token_hex(4)}{suffix}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj, *, default=None) -> Path:
    """Write ``obj`` as indented JSON atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_file(p, ".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(obj, fh, indent=2, default=default)
        os.replace(tmp, p)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return p
