"""A resumable on-disk store of finished slices: a .npy memmap (or the Zarr output being
written) plus a JSON record.

The record names the settings it belongs to (a hash); a different hash discards the store
instead of mixing results. A slice is listed as done only after its pixels were flushed to
disk, so a crash at any point loses at most the slice being written.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import move_into_place, open_zarr, write_json

STORE = "store.npy"
RECORD = "record.json"


def settings_key(settings: dict, *arrays: np.ndarray | None) -> str:
    """A hash of JSON-able settings and the bytes, shapes and dtypes of the arrays."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for arr in arrays:
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{a.shape}{a.dtype}".encode())
        h.update(hashlib.blake2b(a.reshape(-1).view(np.uint8), digest_size=32).digest())
    return h.hexdigest()


class SliceStore:
    """Finished slices of one output, kept in ``folder`` between runs."""

    def __init__(self, folder: str | Path, key: str, shape: tuple[int, ...]):
        self.folder = Path(folder)
        self.key = key
        self.shape = tuple(shape)
        self.array: np.ndarray | None = None
        self.record = self._load()

    def _load(self) -> dict:
        path = self.folder / RECORD
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            return self._fresh()
        if record.get("key") != self.key or record.get("shape") != list(self.shape):
            return self._fresh()
        return record

    def _fresh(self) -> dict:
        return {"key": self.key, "shape": list(self.shape), "done": {}, "complete": False}

    @property
    def done(self) -> dict[int, dict]:
        """Finished flat slice index -> its report record."""
        return {int(k): v for k, v in self.record["done"].items()}

    @property
    def complete(self) -> bool:
        return bool(self.record.get("complete"))

    def reset(self) -> None:
        """Forget every finished slice (e.g. when the final file is gone)."""
        self.record = self._fresh()

    def open(self) -> np.ndarray:
        """The memmap (shape ``shape``, float32), reused when the record matches it."""
        path = self.folder / STORE
        if self.record["done"] and not self.complete and path.is_file():
            try:
                arr = np.load(path, mmap_mode="r+")
                if arr.shape == self.shape and arr.dtype == np.float32:
                    self.array = arr
                    return arr
            except (OSError, ValueError):
                pass
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record = self._fresh()
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=self.shape)
        self._save()
        return self.array

    def mark_done(self, flat: int, record: dict) -> None:
        """Flush the slice's pixels, then list it as finished."""
        self.array.flush()
        self.record["done"][str(int(flat))] = record
        self._save()

    def finish(self, output: str) -> None:
        """The final file is written: drop the pixels, keep the record (reruns skip everything)."""
        self.record.update(complete=True, output=str(output))
        self._save()
        self.array = None
        (self.folder / STORE).unlink(missing_ok=True)

    def _save(self) -> None:
        write_json(self.folder / RECORD, self.record)


class ZarrStore(SliceStore):
    """Finished slices written straight into the Zarr output, built in ``folder`` and moved
    to the output's place once complete (a folder cannot be replaced in one step as a file can).

    ``create(path)`` makes the empty output array (with its metadata) at ``path``.
    """

    def __init__(self, folder: str | Path, key: str, shape: tuple[int, ...], *, output: str | Path,
                 dtype, create: Callable[[Path], object]):
        super().__init__(folder, key, shape)
        self.partial = self.folder / Path(output).name
        self.dtype = np.dtype(dtype)
        self.create = create

    def open(self):
        """The partial output, reused when the record matches it; otherwise made afresh."""
        if self.record["done"] and not self.complete and self.partial.is_dir():
            try:
                arr = open_zarr(self.partial, mode="r+")
                if arr.shape == self.shape and arr.dtype == self.dtype:
                    self.array = arr
                    return arr
            except (OSError, ValueError, KeyError):
                pass
        shutil.rmtree(self.partial, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.record = self._fresh()
        self.array = self.create(self.partial)
        self._save()
        return self.array

    def mark_done(self, flat: int, record: dict) -> None:
        """Zarr writes reach the disk before they return: just list the slice."""
        self.record["done"][str(int(flat))] = record
        self._save()

    def finish(self, output: str, keep: set[int] | None = None) -> None:
        """Move the complete output into place; the record keeps only ``keep`` (the slices
        restored in the output: others were overwritten by the copied-through input)."""
        if keep is not None:
            self.record["done"] = {k: v for k, v in self.record["done"].items() if int(k) in keep}
        self.array = None
        move_into_place(self.partial, output)
        self.record.update(complete=True, output=str(output))
        self._save()
