"""The quality harness's real-noise experiment: pairs, affine-fitted scores, rows per method."""
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_dip.core.task import make_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"
spec = importlib.util.spec_from_file_location("quality", ROOT / "benchmarks" / "quality.py")
quality = importlib.util.module_from_spec(spec)
sys.modules.setdefault("quality", quality)
spec.loader.exec_module(quality)


def test_pairs_and_the_affine_fitted_score():
    pairs = quality.fluo_pairs(DATA, 64)
    assert [p.name for p in pairs] == ["w2s-020_1", "w2s-044_0", "w2s-077_2", "fmd-confocal-fish3"]
    assert all(p.noisy.shape == p.clean.shape == (64, 64) for p in pairs)
    clean = pairs[0].clean
    assert quality.affine_score(0.5 * clean + 30, clean)[0] > 90  # an affine copy scores perfectly
    p, q = quality.affine_score(pairs[0].noisy, clean)
    assert 10 < p < 30 and 0 < q < 1


def test_dip_rows_score_oracle_and_auto_for_each_mode():
    net = dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4)
    config = make_config("denoise", iterations=20, network=net, precision="fp32",
                         stopping=dict(window=5, patience=5, min_iterations=0))
    pairs = quality.fluo_pairs(DATA, 32)[:2]
    models = [quality.estimate_model(p) for p in quality.fluo_pairs(DATA)[:2]]
    for mode in ("vst", "vst-mse"):
        rows = quality.realnoise_dip(pairs, mode, config, "32x32", models)
        assert [r["method"].rsplit(" ", 1)[1] for r in rows] == ["oracle", "auto", "discrepancy"] * 2
        oracle, auto, discrepancy = rows[0], rows[1], rows[2]
        assert 1 <= discrepancy["iterations"] <= 20 and "discrepancy stop" in discrepancy["settings"]
        assert oracle["psnr"] > quality.affine_score(pairs[0].noisy, pairs[0].clean)[0]
        assert 1 <= auto["iterations"] <= 20 and "poisson-gaussian" in auto["settings"]
