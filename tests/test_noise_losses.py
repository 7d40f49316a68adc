"""Noise-model losses on the loss slot: deviances >= 0 with the likelihood's gradient, the
unbiased VST loss, per-problem parameters following their problems."""
import numpy as np
import pytest
import torch

from napari_dip.core.fit import drain, fit
from napari_dip.core.losses import LOSSES, Loss, make_loss
from napari_dip.core.nets import SkipConfig
from napari_dip.core.noise import NoiseModel
from napari_dip.core.noise_losses import noise_loss
from napari_dip.core.stopping import FixedStop
from napari_dip.core.task import build_problem, make_config


def test_noise_losses_are_registered_and_follow_their_problems():
    for name in ("gaussian-nll", "poisson-nll", "vst-mse"):
        assert name in LOSSES
    loss = make_loss("gaussian-nll", a=[0.01, 0.02, 0.0], b=[1e-4, 2e-4, 4e-4])
    assert isinstance(loss, Loss)
    p, y = torch.rand(3, 1, 6, 6), torch.rand(3, 1, 6, 6)
    part = loss.rows(torch.tensor([2, 0]))
    np.testing.assert_allclose(part(p[[2, 0]], y[[2, 0]]).numpy(), loss(p, y)[[2, 0]].numpy(), rtol=1e-6)


def test_gaussian_nll_is_a_deviance_with_the_likelihood_gradient():
    a, b = 0.02, 1e-3
    loss = make_loss("gaussian-nll", a=[a], b=[b])
    y = torch.full((1, 1, 1, 1), 0.3)
    grid = torch.linspace(0.0, 0.8, 4001).view(-1, 1, 1, 1)
    values = torch.stack([loss(p.view(1, 1, 1, 1), y)[0] for p in grid])
    assert float(values.min()) == pytest.approx(0.0, abs=1e-4) and bool((values >= 0).all())
    p = torch.tensor([[[[0.45]]]], requires_grad=True)
    loss(p, y).sum().backward()
    q = torch.tensor(0.45, requires_grad=True)
    v = a * q + b
    ((0.3 - q) ** 2 / v + torch.log(v)).backward()
    assert float(p.grad) == pytest.approx(float(q.grad), rel=1e-5)
    gauss = make_loss("gaussian-nll", a=[0.0], b=[0.01])  # a = 0: the squared error over b
    pp, yy = torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5)
    np.testing.assert_allclose(gauss(pp, yy).numpy(), (((pp - yy) ** 2) / 0.01).mean().numpy(), rtol=1e-5)


def test_poisson_deviance_is_zero_at_the_counts():
    loss = make_loss("poisson-nll", a=[0.1], c=[0.0])
    y = torch.tensor([0.0, 0.1, 0.5, 2.0]).view(1, 1, 2, 2)
    assert float(loss(y.clamp_min(1e-4), y)[0]) == pytest.approx(0.0, abs=1e-3)
    assert float(loss(y + 0.3, y)[0]) > 0.1


def test_vst_mse_is_minimised_at_the_clean_intensity_at_low_counts():
    a, b = 0.05, 0.0004  # about 1 count at x = 0.05
    rng = np.random.default_rng(0)
    x = 0.06
    z = a * rng.poisson(x / a, 20000) + rng.normal(0, np.sqrt(b), 20000)
    y = torch.as_tensor(z, dtype=torch.float32).view(1, 1, 1, -1)
    loss = noise_loss("vst-mse", [NoiseModel("poisson-gaussian", a, b)])
    grid = np.linspace(0.01, 0.15, 281)
    values = [float(loss(torch.full_like(y, g), y)[0]) for g in grid]
    assert grid[int(np.argmin(values))] == pytest.approx(x, abs=0.004)
    gat = lambda t: 2 / a * torch.sqrt((a * t + 0.375 * a * a + b).clamp_min(0))  # noqa: E731
    naive = [float(((gat(y) - gat(torch.tensor(g))) ** 2).mean()) for g in grid]
    assert abs(grid[int(np.argmin(naive))] - x) > 3 * abs(grid[int(np.argmin(values))] - x) + 0.003
    dark = torch.tensor([[[[-0.2, 0.0, 0.02, 30.0]]]], requires_grad=True)  # below, at, above the grid
    loss(dark, torch.full((1, 1, 1, 4), 0.05)).sum().backward()
    assert bool(torch.isfinite(dark.grad).all())
    gauss = noise_loss("vst-mse", [NoiseModel("gaussian", 0.0, 0.01)])
    pp, yy = torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4)
    np.testing.assert_allclose(gauss(pp, yy).numpy(), (((pp - yy) ** 2) / 0.01).mean().numpy(), rtol=1e-5)


def test_losses_drive_a_fit_and_bad_models_get_one_clear_error():
    torch.manual_seed(0)
    net = SkipConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4)
    config = make_config("denoise", iterations=60, network=net, precision="fp32")
    y = torch.rand(2, 1, 16, 16) * 0.5 + 0.25
    loss = noise_loss("gaussian-nll", [NoiseModel("poisson-gaussian", 0.01, 1e-4)] * 2)
    result = drain(fit(build_problem(config, y, seeds=[0, 0], loss=loss), config.fit, FixedStop(2),
                       device=torch.device("cpu")))
    assert result.loss_curve.shape == (60, 2)
    assert (result.loss_curve[-1] < 0.7 * result.loss_curve[0]).all()  # the deviance falls
    with pytest.raises(ValueError, match="not rician"):
        noise_loss("vst-mse", [NoiseModel("rician", 0.0, 1e-3)])
    with pytest.raises(ValueError, match="a > 0"):
        noise_loss("poisson-nll", [NoiseModel("gaussian", 0.0, 1e-3)])
