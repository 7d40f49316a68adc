"""The task commands on volumes: NIfTI slices, a killed run resumed, several inputs on Dask."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_dip.batch import work_folder
from napari_dip.cli import main
from napari_dip.io import read_image

torch.set_num_threads(1)
T1 = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "mri" / "niimath_T1.nii.gz"
FAST = ["--iterations", "2", "--stop", "fixed", "--quiet"]


def _stack(path: Path, n: int, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    np.save(path, (rng.random((n, 32, 32)) * 1000).astype(np.float32))
    return path


@pytest.mark.slow
def test_ten_axial_slices_of_the_t1_keep_affine_shape_and_other_slices(tmp_path, capsys):
    out, report = tmp_path / "t1_dip.nii.gz", tmp_path / "report.json"
    code = main(["denoise", str(T1), "-o", str(out), "--axis", "axial", "--slices", "90:100",
                 "--iterations", "1", "--stop", "fixed", "--quiet", "--report", str(report)])
    assert code == 0 and "10 slice(s) restored" in capsys.readouterr().out
    src, result = nib.load(str(T1)), nib.load(str(out))
    assert result.shape == src.shape and result.get_data_dtype() == np.float32
    np.testing.assert_allclose(result.affine, src.affine)
    assert result.header.get_xyzt_units() == src.header.get_xyzt_units()
    a, b = np.asanyarray(src.dataobj), np.asanyarray(result.dataobj)
    np.testing.assert_array_equal(b[..., :90], a[..., :90])
    np.testing.assert_array_equal(b[..., 100:], a[..., 100:])
    assert all(np.abs(b[..., k] - a[..., k]).mean() > 0 for k in range(90, 100))
    r = json.loads(report.read_text())
    assert r["axis"] == 2 and r["slice_range"] == [90, 100] and r["skipped_slices"] == []
    assert [s["slice"] for s in r["slices"]] == list(range(90, 100))
    for key in ("task", "preset", "network", "fit", "device", "torch", "parameters", "seed", "command"):
        assert key in r
    assert all({"iterations", "seconds", "final_loss", "stop_iteration"} <= s.keys() for s in r["slices"])


@pytest.mark.slow
def test_killed_run_resumes_with_only_the_missing_slices(tmp_path):
    src, out, report = _stack(tmp_path / "vol.npy", 8), tmp_path / "out.npy", tmp_path / "r.json"
    cmd = [sys.executable, "-c", "import sys; from napari_dip.cli import main; sys.exit(main())", "denoise", str(src), "-o", str(out), "--iterations", "20",
           "--stop", "fixed", "--device", "cpu", "--quiet", "--report", str(report)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    record = work_folder(out) / "record.json"
    deadline = time.monotonic() + 300
    done: list[str] = []
    while len(done) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            done = list(json.loads(record.read_text())["done"])
        except (OSError, ValueError, KeyError):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert 2 <= len(done) < 8, "the run must be killed halfway"
    assert not out.exists()
    finished = sorted(int(k) for k in json.loads(record.read_text())["done"])
    rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    r = json.loads(report.read_text())
    assert r["skipped_slices"] == finished
    assert sorted(r["processed_slices"]) == [i for i in range(8) if i not in finished]
    assert read_image(out)[0].shape == (8, 32, 32)


@pytest.mark.slow
def test_several_inputs_on_a_local_dask_cluster_match_the_local_run(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for k in range(2):
        _stack(folder / f"v{k}.npy", 3, seed=k)
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert main(["denoise", str(folder), "-o", str(local), *FAST, "--report", str(local / "r.json")]) == 0
    assert main(["denoise", str(folder / "*.npy"), "-o", str(dask), *FAST, "--workers", "2",
                 "--report", str(dask / "r.json")]) == 0
    summary = json.loads((dask / "r.json").read_text())
    assert summary["inputs"] == 2 and summary["complete"] == 2 and summary["processed_slices"] == 6
    assert [Path(v["output"]).name for v in summary["volumes"]] == ["v0_denoise.npy", "v1_denoise.npy"]
    for k in range(2):
        np.testing.assert_allclose(np.load(dask / f"v{k}_denoise.npy"), np.load(local / f"v{k}_denoise.npy"),
                                   rtol=1e-4, atol=1e-2)
    # rerunning finds everything done
    assert main(["denoise", str(folder), "-o", str(local), *FAST, "--report", str(local / "r.json")]) == 0
    again = json.loads((local / "r.json").read_text())
    assert again["skipped_slices"] == 6 and again["processed_slices"] == 0
    assert "up to date" in capsys.readouterr().out


def test_volume_errors_are_one_line(tmp_path, capsys):
    src = _stack(tmp_path / "vol.npy", 3)
    assert main(["denoise", str(src), "-o", str(src), *FAST]) == 2
    assert "is an input" in capsys.readouterr().err
    assert main(["denoise", str(src), "-o", str(tmp_path / "o.npy"), "--slices", "7:9", *FAST]) == 2
    assert "selects no slice" in capsys.readouterr().err
    assert main(["denoise", str(src), "-o", str(tmp_path / "o.npy"), "--axis", "axial", *FAST]) == 2
    assert "needs a NIfTI" in capsys.readouterr().err
    assert main(["denoise", str(tmp_path / "none*.tif"), "-o", str(tmp_path / "o"), *FAST]) == 2
    assert "no image files match" in capsys.readouterr().err
    assert main(["denoise", str(src), "-o", str(tmp_path / "o.npy"), "--workers", "1",
                 "--scheduler", "tcp://127.0.0.1:1", *FAST]) == 2
    assert "not both" in capsys.readouterr().err


def test_a_failing_input_is_reported_and_the_others_go_on(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    _stack(folder / "a_good.npy", 2)
    np.save(folder / "b_flat.npy", np.zeros(40, np.float32))  # one dimension
    nan = np.ones((2, 32, 32), np.float32)
    nan[1, 3, 4] = np.nan
    np.save(folder / "c_nan.npy", nan)
    (folder / "d_broken.tif").write_bytes(b"not a tiff at all")
    _stack(folder / "e_good.npy", 1, seed=1)
    out, report = tmp_path / "out", tmp_path / "r.json"
    assert main(["denoise", str(folder), "-o", str(out), *FAST, "--report", str(report)]) == 1
    written = sorted(p.name for p in out.iterdir() if p.suffix == ".npy")
    assert written == ["a_good_denoise.npy", "e_good_denoise.npy"]
    r = json.loads(report.read_text())
    assert r["inputs"] == 5 and r["complete"] == 2 and r["processed_slices"] == 3
    failed = {Path(f["input"]).name: f["error"] for f in r["failed_inputs"]}
    assert list(failed) == ["b_flat.npy", "c_nan.npy", "d_broken.tif"]
    assert "at least 2 dimensions" in failed["b_flat.npy"] and "NaN" in failed["c_nan.npy"]
    assert all("\n" not in e for e in failed.values())
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("napari-dip: FAILED")]
    assert [ln.split()[2] for ln in lines] == [str((folder / n).resolve()) + ":" for n in failed]


def test_batch_size_and_warm_start_options_reach_every_path(tmp_path, capsys):
    src = _stack(tmp_path / "vol.npy", 5)
    opts = ["--iterations", "12", "--stop", "fixed", "--quiet", "--batch-size", "2", "--warm-start"]
    outs = {}
    for name, extra in (("local", []), ("dask", ["--workers", "1"])):
        out, report = tmp_path / f"{name}.npy", tmp_path / f"{name}.json"
        assert main(["denoise", str(src), "-o", str(out), *opts, *extra, "--report", str(report)]) == 0
        r = json.loads(report.read_text())
        assert r["command"]["batch_size"] == 2 and r["command"]["warm_start"] is True
        records = sorted(r["slices"], key=lambda s: s["slice"])
        assert [s["batch"] for s in records] == [1, 2, 2, 2, 2]  # the first slice alone, then batches
        assert [s["warm_start"] for s in records] == [False, True, True, True, True]
        outs[name] = np.load(out)
        assert outs[name].shape == (5, 32, 32) and np.isfinite(outs[name]).all()
    # the cluster ran the five slices as one task (one cold slice and up to 4 batches after it):
    # the same fits as the local run, up to the float differences of its 2 torch threads
    assert np.abs(outs["dask"] - outs["local"]).mean() < 0.1 * np.abs(outs["local"]).mean()
    cold = tmp_path / "cold.npy"
    assert main(["denoise", str(src), "-o", str(cold), *opts[:-3]]) == 0
    assert not np.allclose(np.load(cold)[1:], outs["local"][1:])
    for bad in ("0", "two"):
        with pytest.raises(SystemExit):
            main(["denoise", str(src), "-o", str(cold), "--batch-size", bad])
        assert "expected 'auto' or a positive integer" in capsys.readouterr().err
