"""A resumable on-disk store of finished slices: a .npy memmap (or the Zarr output being
written) plus a JSON record.

The record names the settings it belongs to (a hash); a different hash discards the store
instead of mixing results. A slice is listed as done only after its pixels were flushed to
disk, together with a checksum of those pixels; the record carries a checksum of itself.
Nothing is trusted on resume: a damaged record is discarded, and every finished slice is read
back and checked before it is reused (a truncated or overwritten store, a record listing a
slice that was never stored), so what does not verify is fitted again and
:attr:`SliceStore.notices` says how many slices and why.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

import numpy as np

from ..io import blocks, move_into_place, open_zarr, release_pages, reserve, write_json

STORE = "store.npy"
RECORD = "record.json"
TILES = "tiles"  # finished tiles of slices not yet finished, one .npy each


def settings_key(settings: dict, *arrays: np.ndarray | None) -> str:
    """A hash of JSON-able settings and the bytes, shapes and dtypes of the arrays."""
    h = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for arr in arrays:
        if arr is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(arr)
        h.update(f"{a.shape}{a.dtype}".encode())
        data = hashlib.blake2b(digest_size=32)
        for block in blocks(a):  # the bytes in order, one block resident at a time
            data.update(block.reshape(-1).view(np.uint8))
        h.update(data.digest())
    return h.hexdigest()


def checksum(value: np.ndarray) -> str:
    """A slice's checksum: its shape, dtype and bytes."""
    a = np.ascontiguousarray(value)
    h = hashlib.blake2b(f"{a.shape}{a.dtype}".encode(), digest_size=16)
    h.update(a.reshape(-1).view(np.uint8))
    return h.hexdigest()


def fingerprint(path: str | os.PathLike) -> str | None:
    """A digest of a file's bytes, or of every file in a folder (a Zarr store); None if missing."""
    p = Path(path)
    if p.is_file():
        files = [p]
    elif p.is_dir():
        files = sorted(f for f in p.rglob("*") if f.is_file())
    else:
        return None
    h = hashlib.blake2b(digest_size=16)
    for f in files:
        h.update(str(f.relative_to(p)).encode() if f != p else b"")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def _record_sum(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "checksum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()


class SliceStore:
    """Finished slices of one output, kept in ``folder`` between runs.

    ``shape`` is the transposed output view (stack axes first, then [C,] Y, X);
    ``stack_ndim`` of its axes index the slices.
    """

    def __init__(self, folder: str | Path, key: str, shape: tuple[int, ...], stack_ndim: int):
        self.folder = Path(folder)
        self.key = key
        self.shape = tuple(shape)
        self.stack_shape = self.shape[:stack_ndim]
        self.array = None
        self.notices: list[str] = []
        self.redone: dict[int, str] = {}
        self.record = self._load()

    def _load(self) -> dict:
        path = self.folder / RECORD
        if not path.exists():
            return self._fresh()
        try:
            record = json.loads(path.read_text())
            intact = isinstance(record, dict) and record.get("checksum") == _record_sum(record)
        except (OSError, ValueError):
            intact = False
        if not intact:
            self.notices.append(f"{path} is damaged (its checksum does not match); finished slices "
                                "cannot be trusted and are fitted again")
            return self._fresh()
        if record.get("key") != self.key or record.get("shape") != list(self.shape):
            if record.get("done"):
                self.notices.append(f"the settings differ from those of the {len(record['done'])} slice(s) "
                                    "stored earlier; starting over")
            return self._fresh()
        return record

    def _fresh(self) -> dict:
        return {"key": self.key, "shape": list(self.shape), "done": {}, "checksums": {}, "tiles": {},
                "complete": False}

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

    def index(self, flat: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(flat, self.stack_shape)) if self.stack_shape else ()

    def read(self, flat: int) -> np.ndarray:
        return np.asarray(self.array[self.index(flat)])

    def write(self, flat: int, value: np.ndarray) -> None:
        self.array[self.index(flat)] = value

    def open(self) -> None:
        """Open the stored pixels, keeping the finished slices that verify; start afresh otherwise."""
        if self._holds_work() and not self.complete:
            try:
                self.array = self._reopen()
            except (OSError, ValueError, KeyError) as err:
                self._redo_all(f"the stored pixels cannot be read ({_short(err)})")
            else:
                self._verify()
                if self._holds_work():
                    self._save()
                    return
        shutil.rmtree(self.folder / TILES, ignore_errors=True)
        self._create()
        self.record = self._fresh()
        self._save()

    def _reopen(self):
        path = self.folder / STORE
        arr = np.load(path, mmap_mode="r")  # refuses a truncated file; r+ would pad it with zeros
        if arr.shape != self.shape or arr.dtype != np.float32:
            raise ValueError(f"{STORE} has shape {arr.shape}, {arr.dtype}")
        return np.load(path, mmap_mode="r+")

    def _create(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / STORE
        self.array = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=self.shape)
        reserve(path, "the resumable store")

    def _redo_all(self, reason: str) -> None:
        for flat in self.done:
            self.redone[flat] = reason
        self.notices.append(f"{len(self.record['done'])} finished slice(s) are fitted again: {reason}")
        self.record = self._fresh()

    def _verify(self) -> None:
        """Drop finished slices whose stored pixels do not match their checksum."""
        bad: dict[int, str] = {}
        sums = self.record.get("checksums", {})
        for flat in self.done:
            want = sums.get(str(flat))
            if want is None:
                bad[flat] = "no checksum was recorded for it"
                continue
            try:
                got = checksum(self.read(flat))
            except (OSError, ValueError, KeyError) as err:
                bad[flat] = f"it cannot be read back ({_short(err)})"
                continue
            if got != want:
                bad[flat] = "its stored pixels do not match their checksum"
        for flat, reason in bad.items():
            self.record["done"].pop(str(flat), None)
            sums.pop(str(flat), None)
            self.redone[flat] = reason
        if bad:
            reasons = sorted(set(bad.values()))
            self.notices.append(f"{len(bad)} finished slice(s) did not verify and are fitted again "
                                f"(slices {_span(sorted(bad))}: {'; '.join(reasons)})")

    def _holds_work(self) -> bool:
        return bool(self.record["done"] or self.record.get("tiles"))

    def tiles_of(self, chunk: list[int]) -> "ChunkTiles":
        """The finished tiles of the slices ``chunk`` (as :func:`napari_dip.api.run` numbers them)."""
        return ChunkTiles(self, chunk)

    def put_tile(self, flat: int, tile: int, value: np.ndarray, record: dict) -> None:
        """Keep a finished tile of a slice: its pixels reach the disk (atomically, by a rename)
        before it is listed with their checksum."""
        folder = self.folder / TILES
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{int(flat)}_{int(tile)}.npy"
        part = path.with_suffix(".part")
        value = np.ascontiguousarray(value, dtype=np.float32)
        with open(part, "wb") as fh:
            np.save(fh, value)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(part, path)
        self.record.setdefault("tiles", {})[f"{int(flat)}:{int(tile)}"] = {"checksum": checksum(value),
                                                                            "record": record}
        self._save()

    def get_tile(self, flat: int, tile: int) -> tuple[np.ndarray, dict] | None:
        """A kept tile (pixels, record) whose pixels verify, else None (and a note when it did not verify)."""
        key = f"{int(flat)}:{int(tile)}"
        entry = self.record.get("tiles", {}).get(key)
        if entry is None:
            return None
        try:
            value = np.load(self.folder / TILES / f"{int(flat)}_{int(tile)}.npy")
        except (OSError, ValueError) as err:
            reason = f"it cannot be read back ({_short(err)})"
        else:
            if checksum(value) == entry["checksum"]:
                return value, entry["record"]
            reason = "its stored pixels do not match their checksum"
        del self.record["tiles"][key]
        self.notices.append(f"tile {tile} of slice {flat} did not verify and is fitted again ({reason})")
        self._save()
        return None

    def _drop_tiles(self, flat: int) -> list[Path]:
        """Unlist the slice's tiles (it is stored whole); their files, to delete."""
        tiles = self.record.get("tiles", {})
        keys = [k for k in tiles if int(k.split(":")[0]) == int(flat)]
        for key in keys:
            del tiles[key]
        return [self.folder / TILES / f"{key.replace(':', '_')}.npy" for key in keys]

    def forget(self, flats) -> None:
        """Take slices off the finished list (their chunk is fitted again as a whole)."""
        for flat in flats:
            self.record["done"].pop(str(flat), None)
            self.record["checksums"].pop(str(flat), None)

    def mark_done(self, flat: int, record: dict) -> None:
        """Flush the slice's pixels, then list it as finished with their checksum."""
        self._flush()
        self.record["checksums"][str(int(flat))] = checksum(self.read(flat))
        self.record["done"][str(int(flat))] = record
        stale = self._drop_tiles(flat)
        self._save()
        for path in stale:  # after the record no longer lists them
            path.unlink(missing_ok=True)

    def _flush(self) -> None:
        release_pages(self.array)  # on disk, and out of the resident memory: a large store is not held in RAM

    def finish(self, output: str) -> None:
        """The final file is written: drop the pixels, keep the record (reruns skip everything)."""
        self.record.update(complete=True, output=str(output), output_fingerprint=fingerprint(output))
        self._save()
        self.array = None
        (self.folder / STORE).unlink(missing_ok=True)
        shutil.rmtree(self.folder / TILES, ignore_errors=True)

    def output_intact(self, output: str | os.PathLike) -> bool:
        """Whether the finished output is still the file this store wrote."""
        return self.complete and fingerprint(output) == self.record.get("output_fingerprint")

    def _save(self) -> None:
        self.record["checksum"] = _record_sum(self.record)
        write_json(self.folder / RECORD, self.record)


class ZarrStore(SliceStore):
    """Finished slices written straight into the Zarr output, built in ``folder`` and moved
    to the output's place once complete (a folder cannot be replaced in one step as a file can).

    ``create(path)`` makes the empty output array (with its metadata) at ``path``; ``cut``
    (a :class:`~napari_dip.arrays.Slicing` of the output) reads and writes its slices.
    """

    def __init__(self, folder: str | Path, key: str, shape: tuple[int, ...], *, output: str | Path,
                 dtype, create: Callable[[Path], object], cut):
        super().__init__(folder, key, shape, len(cut.stack_shape))
        self.partial = self.folder / Path(output).name
        self.dtype = np.dtype(dtype)
        self.create = create
        self.cut = cut

    def read(self, flat: int) -> np.ndarray:
        return self.cut.read(self.array, flat)

    def write(self, flat: int, value: np.ndarray) -> None:
        self.cut.write(self.array, flat, value)

    def _reopen(self):
        arr = open_zarr(self.partial, mode="r+")
        if arr.shape != self.shape or arr.dtype != self.dtype:
            raise ValueError(f"the partial output has shape {arr.shape}, {arr.dtype}")
        return arr

    def _create(self) -> None:
        shutil.rmtree(self.partial, ignore_errors=True)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.array = self.create(self.partial)

    def _flush(self) -> None:
        """Zarr writes reach the disk before they return."""

    def finish(self, output: str, keep: set[int] | None = None) -> None:
        """Move the complete output into place; the record keeps only ``keep`` (the slices
        restored in the output: others were overwritten by the copied-through input)."""
        if keep is not None:
            self.record["done"] = {k: v for k, v in self.record["done"].items() if int(k) in keep}
        self.array = None
        move_into_place(self.partial, output)
        self.record.update(complete=True, output=str(output), output_fingerprint=fingerprint(output))
        self._save()


class ChunkTiles:
    """A store's finished tiles for one :func:`napari_dip.api.run` over the slices ``chunk``
    (the run numbers them 0, 1, ...): its ``tile_store``."""

    def __init__(self, store: SliceStore, chunk: list[int]):
        self.store, self.chunk = store, list(chunk)

    def get(self, index: int, tile: int):
        return self.store.get_tile(self.chunk[index], tile)

    def put(self, index: int, tile: int, value: np.ndarray, record: dict) -> None:
        self.store.put_tile(self.chunk[index], tile, value, record)


def _short(err: Exception) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _span(items: list[int]) -> str:
    return ", ".join(map(str, items)) if len(items) <= 8 else f"{', '.join(map(str, items[:8]))}, ..."
