"""The settings sweep: grid expansion, one CSV row per run, resuming, the CLI."""
from __future__ import annotations

import csv

import numpy as np
import pytest

from napari_dip.cli import main
from napari_dip.batch.sweep import COLUMNS, REPORT_GRID, expand, run_sweep


def phantom(h=24, w=24, shift=0):
    y, x = np.mgrid[0:h, 0:w]
    return (0.5 + 0.3 * np.sin((x + shift) / 3.0) * np.cos(y / 4.0)).astype(np.float32)


def rows_of(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_expand_takes_every_combination_with_defaults():
    runs = expand({"channels": [8, 16], "code": ["uniform", "perlin"], "patches": ["1x1"]})
    assert len(runs) == 4 and runs[0]["blocks"] == 6 and runs[-1]["code"] == "perlin"
    assert {(r["channels"], r["code"]) for r in runs} == {(8, "uniform"), (8, "perlin"), (16, "uniform"), (16, "perlin")}
    assert len(expand(REPORT_GRID)) == 7 * 3 * 3 * 3 * 3 * 4
    with pytest.raises(ValueError, match="unknown sweep setting"):
        expand({"colour": [1]})


def test_sweep_writes_rows_and_resumes(tmp_path):
    out = tmp_path / "runs.csv"
    grid = {"channels": [4, 8], "blocks": [2], "scale": [4], "iterations": [20], "ensemble": [2]}
    slices = {0: phantom(), 3: phantom(shift=5)}
    first = list(run_sweep({0: slices[0]}, grid, out, device="cpu"))
    assert len(first) == 2
    rows = rows_of(out)
    assert list(rows[0]) == list(COLUMNS) and len(rows) == 2
    r = rows[1]
    assert r["channels"] == "8" and r["slice"] == "0" and float(r["psnr"]) > 10
    psnrs = [float(r["psnr_min"]), float(r["psnr_max"])]
    assert psnrs[0] <= float(r["psnr_mean"]) <= psnrs[1] and float(r["cv_percent"]) >= 0
    assert r["unstable"] in ("True", "False") and int(r["parameters"]) == 8 * 8 * 2 + 2 * 8 * 2 + 8
    # a second sweep over both slices runs only the two new rows
    status = []
    again = list(run_sweep(slices, grid, out, device="cpu", on_run=lambda p, n, s, st: status.append(st)))
    assert status == ["skip", "skip", "run", "run"] and len(again) == 2
    assert [row["slice"] for row in rows_of(out)] == ["0", "0", "3", "3"]


def test_refused_combinations_get_an_error_row(tmp_path):
    out = tmp_path / "runs.csv"
    grid = {"channels": [4], "blocks": [2], "scale": [4, 16], "patches": ["3x3"], "iterations": [5]}
    rows = list(run_sweep({0: phantom()}, grid, out, device="cpu"))
    assert rows[0]["error"] == "" and float(rows[0]["psnr"]) > 0
    assert "leaves whole patches outside" in rows[1]["error"] and rows[1]["psnr"] == ""
    assert len(list(run_sweep({0: phantom()}, grid, out, device="cpu"))) == 0  # both count as done


def test_sweep_refuses_a_foreign_csv(tmp_path):
    out = tmp_path / "other.csv"
    out.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError, match="other columns"):
        list(run_sweep({0: phantom()}, {"iterations": [1]}, out, device="cpu"))


def test_cli_sweep_over_a_stack_with_comma_lists(tmp_path, capsys):
    stack = np.stack([phantom(shift=s) for s in range(3)])
    src = tmp_path / "stack.npy"
    np.save(src, stack)
    out = tmp_path / "s.csv"
    args = ["sweep", str(src), "--csv", str(out), "--slices", "0,2", "--channels", "4,6", "--blocks", "2",
            "--scale", "4", "--iterations", "10", "--code", "uniform", "--code-3d", "no,yes", "--device", "cpu",
            "--quiet"]
    assert main(args) == 0
    rows = rows_of(out)
    assert len(rows) == 2 * 2 * 2
    assert {r["slice"] for r in rows} == {"0", "2"} and {r["code_3d"] for r in rows} == {"True", "False"}
    assert "8 run(s), 8 done now, 0 already" in capsys.readouterr().out
    assert main(args) == 0
    assert "8 run(s), 0 done now, 8 already" in capsys.readouterr().out and len(rows_of(out)) == 8


def test_cli_report_grid_and_bad_values(tmp_path, capsys):
    from napari_dip.cli import build_parser
    from napari_dip.cli.sweep import grid_from_args
    args = build_parser().parse_args(["sweep", "x.npy", "--csv", "o.csv", "--grid", "report", "--channels", "96"])
    grid = grid_from_args(args)
    assert grid["channels"] == [96] and grid["scale"] == [8, 16, 32] and grid["patches"] == REPORT_GRID["patches"]
    src = tmp_path / "a.npy"
    np.save(src, phantom())
    assert main(["sweep", str(src), "--csv", str(tmp_path / "o.csv"), "--blocks", "two"]) == 2
    assert "--blocks has a value that is not a int" in capsys.readouterr().err
