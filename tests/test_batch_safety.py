"""Data safety of volume runs: one owner per output, a resume state that is verified, a resume
key that covers everything that changes the output, results that do not depend on where a run
stopped, and Dask runs that stop when their workers are gone."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dip.api import SliceDone
from napari_dip.batch import ClusterLost, OutputLocked, open_client, output_lock, process_volume, work_folder
from napari_dip.batch.lock import lock_path
from napari_dip.core.task import make_config
from napari_dip.io import ImageMeta

from test_batch import _volume  # noqa: E402 - the same small test volume

torch.set_num_threads(1)
NPY = ImageMeta("", "npy", "float32")
ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}


def _config(**kw):
    return make_config("denoise", iterations=kw.pop("iterations", 3), stop="fixed", **kw)


def _stop_after(n: int):
    """(on_event, cancel): cancel once ``n`` slices are done."""
    done = []

    def on_event(event):
        if isinstance(event, SliceDone):
            done.append(event.slice)
    return on_event, lambda: len(done) >= n


# --- one owner per output ----------------------------------------------------------------------

HOLD = ("import sys, time; from napari_dip.batch.lock import output_lock\n"
        "with output_lock(sys.argv[1]):\n    print('held', flush=True); time.sleep(float(sys.argv[2]))")


def _holder(out: Path, seconds: float) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out), str(seconds)], env=ENV,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_run_on_a_locked_output_is_refused_naming_the_first_and_writes_nothing(tmp_path):
    out = tmp_path / "out.npy"
    holder = _holder(out, 30)
    try:
        with pytest.raises(OutputLocked, match=rf"out.npy is being written by another napari-dip run \(pid {holder.pid} on host"):
            process_volume(_config(), _volume(2), NPY, out)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npy.napari-dip.lock"]  # the holder's only
    finally:
        holder.kill()
        holder.wait()


def test_wait_starts_when_the_first_run_ends(tmp_path):
    out = tmp_path / "out.npy"
    notes = []
    holder = _holder(out, 3)
    with output_lock(out, wait=True, on_notice=notes.append):
        assert holder.wait(timeout=60) == 0  # the first owner released it and ends
    assert len(notes) == 1 and f"waiting for the run writing this output to end (pid {holder.pid}" in notes[0]
    assert not lock_path(out).exists()
    holder = _holder(out, 3)
    report = process_volume(_config(), _volume(2), NPY, out, wait=True)  # the CLI's --wait
    assert report["complete"] and holder.wait() == 0


def test_a_lock_whose_process_is_gone_is_taken_over_and_says_so(tmp_path):
    out = tmp_path / "out.npy"
    holder = _holder(out, 60)
    holder.kill()  # SIGKILL: its lock file stays, nobody holds it
    holder.wait()
    assert lock_path(out).exists()
    report = process_volume(_config(), _volume(2), NPY, out)
    assert report["complete"] and not lock_path(out).exists()
    assert any(f"took over the lock left by a run that is gone (pid {holder.pid}" in n for n in report["notices"])


@pytest.mark.slow
def test_two_commands_on_one_output_never_mix_their_slices(tmp_path):
    src, out = tmp_path / "vol.npy", tmp_path / "out.npy"
    np.save(src, _volume(6))
    cmd = [sys.executable, "-m", "napari_dip.cli", "denoise", str(src), "-o", str(out), "--iterations", "40",
           "--stop", "fixed", "--device", "cpu", "--quiet"]
    first = subprocess.Popen(cmd + ["--seed", "0"], env=ENV, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not lock_path(out).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = subprocess.run(cmd + ["--seed", "1"], env=ENV, capture_output=True, text=True, timeout=120)
    assert first.wait(timeout=300) == 0
    assert second.returncode == 2 and "Traceback" not in second.stderr
    assert "is being written by another napari-dip run (pid" in second.stderr.strip().splitlines()[-1]
    record = json.loads((work_folder(out) / "record.json").read_text())
    assert sorted(record["done"]) == [str(i) for i in range(6)]
    rerun = subprocess.run(cmd + ["--seed", "0"], env=ENV, capture_output=True, text=True, timeout=120)
    assert rerun.returncode == 0 and "up to date" in rerun.stdout


# --- the resume state is verified ----------------------------------------------------------------

@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of a 4-slice volume: (volume, output)."""
    vol = _volume(4)
    out = tmp_path_factory.mktemp("ref") / "ref.npy"
    process_volume(_config(), vol, NPY, out)
    return vol, np.load(out)


def _interrupted(tmp_path, vol, n: int = 3) -> Path:
    out = tmp_path / "out.npy"
    on_event, cancel = _stop_after(n)
    first = process_volume(_config(), vol, NPY, out, on_event=on_event, cancel=cancel)
    assert sorted(first["processed_slices"]) == list(range(n)) and not first["complete"]
    return out


def _slice_offset(store: Path, flat: int) -> tuple[int, int]:
    arr = np.load(store, mmap_mode="r")
    per = arr[0].nbytes
    return arr.offset + flat * per, per


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_store_is_detected_and_only_what_does_not_verify_is_fitted_again(tmp_path, reference, damage):
    vol, ref = reference
    out = _interrupted(tmp_path, vol)
    store = work_folder(out) / "store.npy"
    if damage == "truncate":  # numpy's r+ memmap would pad the missing part with zeros
        os.truncate(store, store.stat().st_size - 32 * 32 * 4 * 2)  # half of slice 2 and slice 3 gone
        expect = [0, 1, 2]
    else:
        at, per = _slice_offset(store, 1)
        with open(store, "r+b") as fh:
            fh.seek(at + per // 2)
            fh.write(b"\x13\x37\x00\xff")
        expect = [1]
    report = process_volume(_config(), vol, NPY, out)
    assert report["complete"] and [r["slice"] for r in report["redone_slices"]] == expect
    assert sorted(report["processed_slices"]) == sorted(set(expect) | {3})
    assert any("fitted again" in n for n in report["notices"])
    np.testing.assert_array_equal(np.load(out), ref)


def test_a_record_listing_a_slice_never_stored_or_a_damaged_record_is_not_trusted(tmp_path, reference):
    from napari_dip.batch.store import _record_sum
    vol, ref = reference
    out = _interrupted(tmp_path, vol, 2)
    path = work_folder(out) / "record.json"
    record = json.loads(path.read_text())
    record["done"]["3"] = dict(record["done"]["0"], slice=3)  # listed as done, never stored
    record["checksum"] = _record_sum(record)
    path.write_text(json.dumps(record))
    report = process_volume(_config(), vol, NPY, out)
    assert [r["slice"] for r in report["redone_slices"]] == [3]
    assert "no checksum" in report["redone_slices"][0]["reason"]
    np.testing.assert_array_equal(np.load(out), ref)
    (tmp_path / "b").mkdir()
    out2 = _interrupted(tmp_path / "b", vol, 2)
    path = work_folder(out2) / "record.json"
    path.write_text(path.read_text().replace('"complete": false', '"complete": true'))  # checksum now wrong
    report = process_volume(_config(), vol, NPY, out2)
    assert report["skipped_slices"] == [] and sorted(report["processed_slices"]) == [0, 1, 2, 3]
    assert any("is damaged" in n for n in report["notices"])
    np.testing.assert_array_equal(np.load(out2), ref)


def test_an_output_changed_after_the_run_is_not_reported_up_to_date(tmp_path, reference):
    vol, ref = reference
    out = tmp_path / "out.npy"
    process_volume(_config(), vol, NPY, out)
    np.save(out, np.zeros_like(ref))
    report = process_volume(_config(), vol, NPY, out)
    assert report["written"] and any("was changed or removed" in n for n in report["notices"])
    np.testing.assert_array_equal(np.load(out), ref)


# --- the resume key covers everything that changes the output ------------------------------------

def test_dtype_slices_and_the_plan_are_in_the_resume_key(tmp_path):
    vol = _volume(3)
    meta = ImageMeta("", "npy", "uint16")
    image = np.rint(vol).astype(np.uint16)
    out = tmp_path / "out.npy"
    assert process_volume(_config(), image, meta, out)["written"]
    assert np.load(out).dtype == np.float32
    again = process_volume(_config(), image, meta, out, dtype="input")
    assert again["written"] and np.load(out).dtype == np.uint16
    ranged = process_volume(_config(), image, meta, out, dtype="input", slices="1:2")
    assert ranged["written"] and ranged["processed_slices"] == [1]
    np.testing.assert_array_equal(np.load(out)[[0, 2]], image[[0, 2]])  # only the asked slice restored
    batched = process_volume(_config(), image, meta, out, dtype="input", slices="1:2", batch_size=2)
    assert batched["written"] and batched["plan"]["batch_size"] == 2
    torch.set_num_threads(2)
    try:
        threads = process_volume(_config(), image, meta, out, dtype="input", slices="1:2", batch_size=2)
    finally:
        torch.set_num_threads(1)
    assert threads["written"] and threads["plan"]["threads"] == 2
    same = process_volume(_config(), image, meta, out, dtype="input", slices="1:2", batch_size=2)
    assert not same["written"] or same["plan"]["threads"] == 1


# --- reproducibility -----------------------------------------------------------------------------

def test_a_resumed_warm_started_run_equals_an_uninterrupted_one_bit_for_bit(tmp_path):
    vol = _volume(7)
    config = _config(iterations=6)
    whole = process_volume(config, vol, NPY, tmp_path / "whole.npy", warm_start=True)
    assert [s["warm_start"] for s in whole["slices"]] == [False, True, True, True, True, False, True]
    out = tmp_path / "resumed.npy"
    on_event, cancel = _stop_after(5)  # stops inside the second chunk (slices 5, 6)
    first = process_volume(config, vol, NPY, out, warm_start=True, on_event=on_event, cancel=cancel)
    assert sorted(first["processed_slices"]) == [0, 1, 2, 3, 4]
    second = process_volume(config, vol, NPY, out, warm_start=True)
    assert second["skipped_slices"] == [0, 1, 2, 3, 4] and sorted(second["processed_slices"]) == [5, 6]
    np.testing.assert_array_equal(np.load(out), np.load(tmp_path / "whole.npy"))


def test_a_cluster_run_equals_the_local_run_bit_for_bit_with_the_same_threads(tmp_path):
    vol = _volume(5)
    local = process_volume(_config(), vol, NPY, tmp_path / "local.npy", batch_size=2)
    with open_client(workers=1, processes=False) as (client, _):
        dask = process_volume(_config(), vol, NPY, tmp_path / "dask.npy", client=client, threads=1, batch_size=2)
    assert local["complete"] and dask["complete"]
    assert [s["batch"] for s in local["slices"]] == [s["batch"] for s in dask["slices"]] == [2, 2, 2, 2, 1]
    np.testing.assert_array_equal(np.load(tmp_path / "dask.npy"), np.load(tmp_path / "local.npy"))


# --- Dask: bounded retries, a clear stop ---------------------------------------------------------

def _die(config, slices, **kw):
    os._exit(3)  # the worker process dies, as when the kernel's OOM killer ends it


def test_workers_that_keep_dying_stop_the_run_with_a_message_within_a_minute(tmp_path, monkeypatch):
    import cloudpickle

    import napari_dip.batch.cluster as cluster
    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # worker processes cannot import tests/
    monkeypatch.setattr(cluster, "restore_slices", _die)
    out = tmp_path / "out.npy"
    try:
        with open_client(workers=1) as (client, threads):
            began = time.monotonic()  # the cluster is up: from here to the stop
            report = process_volume(_config(), _volume(3), NPY, out, client=client, threads=threads, retries=1)
            took = time.monotonic() - began
    finally:
        cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert took < 60
    assert not report["complete"] and not out.exists() and report["failed_slices"]
    assert all("worker died" in f["error"] and "after 2 attempt(s)" in f["error"] for f in report["failed_slices"])


_RELEASE = threading.Event()


def _lose_the_worker(config, slices, **kw):
    from distributed import get_worker
    worker = get_worker()
    worker.loop.add_callback(worker.close)
    _RELEASE.wait(20)
    raise RuntimeError("gone")


def test_no_worker_left_stops_the_run_with_a_clear_error(tmp_path, monkeypatch):
    import napari_dip.batch.cluster as cluster
    monkeypatch.setattr(cluster, "restore_slices", _lose_the_worker)
    monkeypatch.setattr(cluster, "NO_WORKER_SECONDS", 2.0)
    out = tmp_path / "out.npy"
    began = time.monotonic()
    _RELEASE.clear()
    try:
        with open_client(workers=1, processes=False) as (client, _):
            with pytest.raises(ClusterLost, match="no Dask worker has been left"):
                process_volume(_config(), _volume(2), NPY, out, client=client)
    finally:
        _RELEASE.set()
    assert time.monotonic() - began < 30 and not lock_path(out).exists()


@pytest.mark.slow
def test_ctrl_c_stops_a_cluster_run_promptly_and_leaves_a_resumable_state(tmp_path):
    import signal
    src, out = tmp_path / "vol.npy", tmp_path / "out.npy"
    np.save(src, _volume(12))
    cmd = [sys.executable, "-m", "napari_dip.cli", "denoise", str(src), "-o", str(out), "--iterations", "40",
           "--stop", "fixed", "--device", "cpu", "--quiet", "--workers", "2"]  # one torch thread each
    def as_from_a_shell():  # Ctrl-C as a terminal delivers it, whatever the test worker's signal state
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    proc = subprocess.Popen(cmd, env=ENV, stderr=subprocess.PIPE, text=True, preexec_fn=as_from_a_shell)
    try:
        record = work_folder(out) / "record.json"
        deadline = time.monotonic() + 240
        done = []
        while not done and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                done = list(json.loads(record.read_text())["done"])
            except (OSError, ValueError, KeyError):
                pass
        assert done, "the run must have finished a slice"
        proc.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert time.monotonic() - stopped < 30 and code == 130
    assert "rerun the same command to resume" in proc.stderr.read()
    kept = json.loads(record.read_text())["done"]
    assert len(kept) >= len(done) and not lock_path(out).exists() and not out.exists()
