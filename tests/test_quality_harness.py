"""The quality harness: crops, baselines, one-fit oracle + auto scoring, files written."""
import csv
import importlib.util
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_dip.api import run
from napari_dip.core.fit import drain
from napari_dip.core.task import make_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
sys.modules["quality"] = quality
spec.loader.exec_module(quality)

TINY = dict(channels_down=(8, 16, 16), channels_up=(8, 16, 16), channels_skip=(4, 4, 4), code_channels=8)


def test_denoise_crops_cover_four_kinds_of_real_images():
    crops = quality.denoise_crops(DATA, 32, 2)
    assert len(crops) == 8
    assert {c.kind for c in crops} == {"EM", "MRI", "fluorescence", "natural"}
    for c in crops:
        assert c.image.shape in ((1, 32, 32), (3, 32, 32)) and c.image.dtype == np.float32
        assert 0 <= c.image.min() and c.image.max() <= 1 and c.image.std() > 0.02  # textured, not background
    assert [c.image.shape[0] for c in crops if c.kind == "natural"] == [3, 3]


def test_baselines_improve_on_the_noisy_input():
    clean = quality.denoise_crops(DATA, 32, 1)[0].image
    sigma = 25 / 255
    noisy = quality.add_noise(clean, sigma, 0)
    np.testing.assert_array_equal(noisy, quality.add_noise(clean, sigma, 0))  # same realisation
    results = {m: quality.score(out, clean)[0] for m, _, out, _ in quality.denoise_baselines(noisy, clean, sigma)}
    assert {"noisy input", "TV-Chambolle", "non-local means"} <= set(results)
    assert results["TV-Chambolle"] > results["noisy input"] + 2
    assert results["non-local means"] > results["noisy input"] + 2


@pytest.mark.slow
def test_one_fit_scores_oracle_and_auto_like_separate_api_runs():
    torch.set_num_threads(1)
    clean = quality.denoise_crops(DATA, 32, 1)[0].image
    noisy = quality.add_noise(clean, 25 / 255, 0)
    config = make_config("denoise", iterations=150, network=TINY,
                         stopping=dict(window=10, patience=40, min_iterations=0, output="raw"))
    (rec,) = quality.run_dip(config, [noisy], [clean])
    _, auto_psnr, _, detected, end, _ = rec["autos"][0]
    out, report = drain(run(config, noisy[0], ground_truth=clean[0], device="cpu"))
    assert report["slices"][0]["stop_iteration"] == detected
    assert report["slices"][0]["iterations"] == end
    assert report["slices"][0]["psnr"] == pytest.approx(auto_psnr, abs=0.05)
    out, report = drain(run(replace(config, stop="oracle"), noisy[0], ground_truth=clean[0], device="cpu"))
    assert report["slices"][0]["psnr"] == pytest.approx(rec["oracle"][0], abs=0.05)
    assert rec["oracle"][0] > quality.score(noisy, clean)[0] + 1


@pytest.mark.slow
def test_harness_writes_csv_and_markdown_with_settings(tmp_path):
    torch.set_num_threads(1)
    assert quality.main(["--experiments", "superres", "--crop", "64", "--slices", "1", "--iterations", "20",
                         "--preset", "fast", "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "quality.csv")))
    assert [r["method"] for r in rows].count("bicubic") == 2
    assert [r["method"] for r in rows].count("DIP auto") == 2 and [r["method"] for r in rows].count("DIP oracle") == 2
    assert all(r["crop"] == "64x64 HR" and r["degradation"] == "x4 Lanczos2" for r in rows)
    dip = [r for r in rows if r["method"].startswith("DIP")]
    assert all("max 20 it" in r["settings"] and "fp32" in r["settings"] and float(r["psnr"]) > 5 for r in dip)
    with pytest.raises(ValueError, match="--crop 40 does not suit"):
        quality.main(["--experiments", "superres", "--crop", "40", "--out", str(tmp_path)])
    md = (tmp_path / "quality.md").read_text()
    assert "--iterations 20" in md and md.count("| zebra |") == 3


def test_harness_fits_whole_mri_slices_with_the_deep_decoder(tmp_path):
    torch.set_num_threads(1)
    assert quality.main(["--experiments", "decoder", "--slices", "1", "--iterations", "30",
                         "--out", str(tmp_path)]) == 0
    rows = list(csv.DictReader(open(tmp_path / "quality.csv")))
    assert [r["method"] for r in rows] == ["Deep Decoder fit"]
    row = rows[0]
    assert row["image"] == "mri-t1-axial93" and row["crop"] == "235x192"
    assert "k 96, l 6, s 8, blurred code, 30 it" in row["settings"]
    assert float(row["psnr"]) > 15  # 30 iterations already represent the slice coarsely
