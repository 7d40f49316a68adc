"""``napari-dip decoder``: files beside OUT, report contents, volume slices."""
from __future__ import annotations

import json

import numpy as np
import tifffile

from napari_dip.cli import main


def phantom(h=32, w=32):
    y, x = np.mgrid[0:h, 0:w]
    return (1000 + 800 * np.sin(x / 4.0) * np.cos(y / 5.0)).astype(np.float32)


def test_ensemble_and_patches_write_the_documented_files(tmp_path, capsys):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, phantom())
    out = tmp_path / "fit.tif"
    rep = tmp_path / "r.json"
    code = main(["decoder", str(src), "-o", str(out), "--channels", "8", "--blocks", "2", "--scale", "4",
                 "--patches", "1x2", "--ensemble", "2", "--iterations", "40", "--device", "cpu",
                 "--report", str(rep), "--quiet"])
    assert code == 0
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["fit.tif", "fit_member0.tif", "fit_member1.tif", "fit_patch_r0c0.tif", "fit_patch_r0c1.tif",
                     "fit_std.tif", "in.tif", "r.json"]
    mean, m0, m1 = (tifffile.imread(tmp_path / n) for n in ("fit.tif", "fit_member0.tif", "fit_member1.tif"))
    np.testing.assert_allclose(mean, (m0 + m1) / 2, rtol=1e-5)
    assert tifffile.imread(tmp_path / "fit_patch_r0c1.tif").shape == (32, 16)
    report = json.loads(rep.read_text())
    assert report["ensemble"] == 2 and len(report["members"]) == 2 and "cv_percent" in report
    assert len(report["patch_metrics"]) == 2 and report["outputs"]["std"].endswith("fit_std.tif")
    printed = capsys.readouterr().out
    assert "member 1 (seed 2)" in printed and "CV of PSNR across members" in printed
    assert "parameters" in printed and "patch r0c1" in printed


def test_one_slice_of_a_volume_and_errors(tmp_path, capsys):
    vol = np.stack([phantom(24, 24) * (1 + 0.1 * i) for i in range(5)])
    src = tmp_path / "vol.npy"
    np.save(src, vol)
    out = tmp_path / "mid.npy"
    assert main(["decoder", str(src), "-o", str(out), "--slice", "middle", "--channels", "8", "--blocks", "2",
                 "--scale", "4", "--iterations", "30", "--code", "perlin", "--device", "cpu", "--quiet"]) == 0
    res = np.load(out)
    assert res.shape == (24, 24) and abs(float(res.mean()) - float(vol[2].mean())) < 0.1 * float(vol[2].mean())
    assert main(["decoder", str(src), "-o", str(out), "--device", "cpu"]) == 2
    assert "pick one slice with --slice" in capsys.readouterr().err
    assert main(["decoder", str(src), "-o", str(out), "--slice", "1", "--preset", "paper"]) == 2
    assert "--preset does not apply" in capsys.readouterr().err


def test_a_tiled_decoder_run_prints_its_plan_and_writes_no_tile_files(tmp_path, capsys):
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, phantom(64, 80))
    out = tmp_path / "fit.tif"
    rep = tmp_path / "r.json"
    code = main(["decoder", str(src), "-o", str(out), "--channels", "8", "--blocks", "2", "--scale", "4",
                 "--tile-size", "48", "--iterations", "3", "--device", "cpu", "--report", str(rep)])
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fit.tif", "in.tif", "r.json"]
    assert tifffile.imread(out).shape == (64, 80)
    report = json.loads(rep.read_text())
    assert report["tiled"] and report["patches"] == "2x3" and report["batch_size"] >= 1
    err = capsys.readouterr().err
    assert "tiling: 6 tile(s) of 48x48 (2 x 3) x 1 member(s) in batches of" in err


def test_the_progress_bar_of_a_decoder_run_in_several_batches_counts_every_iteration(tmp_path, capsys):
    from napari_dip.core.memory import fit_bytes
    from napari_dip.core.nets.decoder import DecoderConfig
    src = tmp_path / "in.tif"
    tifffile.imwrite(src, phantom(64, 80))
    per_tile = fit_bytes(DecoderConfig(channels=8, blocks=2, scale=4), 1, (48, 48), precision="fp32")
    code = main(["decoder", str(src), "-o", str(tmp_path / "fit.tif"), "--channels", "8", "--blocks", "2",
                 "--scale", "4", "--tile-size", "48", "--max-memory", str(int(2.5 * per_tile)),
                 "--iterations", "3", "--device", "cpu"])
    assert code == 0
    err = capsys.readouterr().err
    assert "6 tile(s) of 48x48 (2 x 3) x 1 member(s) in batches of 2" in err
    assert "9/9" in err  # 3 batches x 3 iterations
