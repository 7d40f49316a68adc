"""Several inputs in one command: expanding folders and globs, naming each output."""
from __future__ import annotations

import glob
from pathlib import Path

from ..io import FORMATS, extension, file_format, is_zarr


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files (and Zarr folders) named by paths, folders (their images, sorted) and globs, without repeats."""
    found: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir() and not is_zarr(p):
            matches = sorted(f for f in p.iterdir() if _is_image(f))
            if not matches:
                raise FileNotFoundError(f"no image files in folder {p}")
        elif glob.has_magic(pattern):
            matches = sorted(Path(f) for f in glob.glob(pattern) if _is_image(Path(f)))
            if not matches:
                raise FileNotFoundError(f"no image files match {pattern!r}")
        else:
            if not _is_image(p) and not p.is_file():
                raise FileNotFoundError(f"no such file: {p}")
            matches = [p]
        for m in matches:
            if m.resolve() not in {f.resolve() for f in found}:
                found.append(m)
    return found


def _is_image(path: Path) -> bool:
    """An image file of a known format, or a Zarr folder."""
    if is_zarr(path):
        return path.is_dir()
    return path.is_file() and any(path.name.lower().endswith(ends) for _, ends in FORMATS)


def output_for(source: Path, output: str, *, several: bool, suffix: str) -> Path:
    """The output path: ``output`` itself for one input, else ``output/<stem>_<suffix><ext>``.

    A single input whose ``output`` is an existing folder (not a Zarr store) also goes inside it.
    """
    out = Path(output)
    if not several and not (out.is_dir() and not is_zarr(out)):
        file_format(out)  # a clear error for an unknown extension
        return out
    if (out.exists() and not out.is_dir()) or is_zarr(out):
        raise ValueError(f"with several inputs, -o must be a folder; {out} names a single image")
    ext = extension(source)
    stem = source.name[: len(source.name) - len(ext)]
    return out / f"{stem}_{suffix}{ext}"
