"""Several inputs in one command: expanding folders and globs, naming each output."""
from __future__ import annotations

import glob
from pathlib import Path

from ..io import FORMATS, extension, file_format


def expand_inputs(patterns: list[str]) -> list[Path]:
    """Files named by paths, folders (their image files, sorted) and globs, without repeats."""
    found: list[Path] = []
    for pattern in patterns:
        p = Path(pattern)
        if p.is_dir():
            matches = sorted(f for f in p.iterdir() if f.is_file() and _known(f))
            if not matches:
                raise FileNotFoundError(f"no image files in folder {p}")
        elif glob.has_magic(pattern):
            matches = sorted(Path(f) for f in glob.glob(pattern) if Path(f).is_file() and _known(Path(f)))
            if not matches:
                raise FileNotFoundError(f"no image files match {pattern!r}")
        else:
            if not p.is_file():
                raise FileNotFoundError(f"no such file: {p}")
            matches = [p]
        for m in matches:
            if m.resolve() not in {f.resolve() for f in found}:
                found.append(m)
    return found


def _known(path: Path) -> bool:
    return any(path.name.lower().endswith(ends) for _, ends in FORMATS)


def output_for(source: Path, output: str, *, several: bool, suffix: str) -> Path:
    """The output path: ``output`` itself for one input, else ``output/<stem>_<suffix><ext>``.

    A single input whose ``output`` is an existing folder also goes inside it.
    """
    out = Path(output)
    if not several and not out.is_dir():
        file_format(out)  # a clear error for an unknown extension
        return out
    if out.exists() and not out.is_dir():
        raise ValueError(f"with several inputs, -o must be a folder; {out} is a file")
    ext = extension(source)
    stem = source.name[: len(source.name) - len(ext)]
    return out / f"{stem}_{suffix}{ext}"
