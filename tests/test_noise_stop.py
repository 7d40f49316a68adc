"""The discrepancy stop: a fit with a known noise model stops when its residual reaches the
noise variance the model predicts."""
import numpy as np
import pytest
import torch

from napari_dip import api
from napari_dip.core.noise import NoiseModel
from napari_dip.core.noise_stop import DiscrepancyStop, noise_levels

def test_noise_levels_are_the_mean_predicted_variance():
    y = torch.stack([torch.full((1, 4, 4), 0.5), torch.linspace(0, 1, 16).reshape(1, 4, 4)])
    levels = noise_levels(y, [NoiseModel("poisson-gaussian", 0.01, 0.001), NoiseModel("gaussian", 0.0, 0.004)])
    assert levels.tolist() == pytest.approx([0.006, 0.004])
    # Below the dark level the variance is 0, not negative.
    dark = noise_levels(torch.zeros(1, 1, 4, 4), [NoiseModel("poisson-gaussian", 0.01, -0.002)])
    assert dark.tolist() == [0.0]


def test_each_problem_stops_when_its_residual_reaches_its_level():
    observed = torch.zeros(3, 1, 4, 4)
    rule = DiscrepancyStop(observed, [0.52, 0.12, 1e-6], span=1)  # no smoothing
    for it in range(1, 21):
        residual = 1.0 - 0.05 * it  # 0.95, 0.90, ... 0.0 at it 20
        out = torch.full((3, 1, 4, 4), np.sqrt(max(residual, 0.0)))
        candidate = torch.full((3, 1, 4, 4), float(it))
        done = rule.observe(it, out, candidate, None, None)
    assert done.tolist() == [True, True, True]
    best, its = rule.result()
    assert its == [10, 18, 20]  # 1 - 0.05 t <= 0.52 first at t 10, <= 0.12 at t 18, <= 1e-6 at t 20
    assert best[:, 0, 0, 0].tolist() == [10.0, 18.0, 20.0]


def test_a_problem_that_never_gets_there_returns_its_last_candidate():
    rule = DiscrepancyStop(torch.zeros(1, 1, 4, 4), [0.01], span=1)
    for it in range(1, 6):
        rule.observe(it, torch.ones(1, 1, 4, 4), torch.full((1, 1, 4, 4), float(it)), None)
    best, its = rule.result()
    assert its == [5] and float(best.max()) == 5.0
    with pytest.raises(ValueError, match="positive"):
        DiscrepancyStop(torch.zeros(1, 1, 4, 4), [0.0])


def test_denoise_with_a_poisson_gaussian_model_stops_at_the_discrepancy():
    yy, xx = np.mgrid[0:32, 0:32] / 32
    clean = 50 + 150 * xx + 30 * np.sin(6 * yy)
    rng = np.random.default_rng(0)
    noisy = np.clip(4.0 * rng.poisson(clean / 4.0) + rng.normal(0, 3, clean.shape), 0, 255)
    # Parameters given larger than the truth (variance about 1300 instead of 530): reached early.
    _, report = api.denoise(noisy, noise="poisson-gaussian", noise_params=(4.0, 800.0), iterations=100,
                            return_report=True, device="cpu")
    (record,) = report["slices"]
    assert record["stop_rule"] == "discrepancy"
    assert 0 < record["stop_iteration"] < 100 and record["iterations"] == record["stop_iteration"]
    _, fixed = api.denoise(noisy, noise="gaussian", return_report=True, iterations=5, device="cpu")
    assert "stop_rule" not in fixed["slices"][0]  # Gaussian: the task's own rule, as before
