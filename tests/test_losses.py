"""The loss slot: the registry, MSE as the default, per-problem parameters following their problems."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from napari_dip.core.fit import drain, fit
from napari_dip.core.losses import LOSSES, MSE, Loss, make_loss
from napari_dip.core.nets import SkipConfig
from napari_dip.core.slots import PerProblem, Registry
from napari_dip.core.task import build_problem, make_config

TINY = SkipConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4)
CPU = torch.device("cpu")


class WeightedMSE(PerProblem):
    """MSE times a weight per problem: a loss with per-problem parameters."""

    name = "weighted"
    per_problem = ("weight",)

    def __init__(self, weight):
        self.weight = torch.as_tensor(weight, dtype=torch.float32)

    def __call__(self, prediction, observed):
        return self.weight * ((prediction - observed) ** 2).flatten(1).mean(1)


def test_mse_is_the_mean_squared_error_per_problem():
    p, y = torch.rand(3, 2, 4, 5), torch.rand(3, 2, 4, 5)
    got = make_loss("mse")(p, y)
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), ((p - y) ** 2).reshape(3, -1).mean(1).numpy(), rtol=1e-6)
    assert isinstance(MSE(), Loss) and MSE().name == "mse" and "mse" in LOSSES


def test_unknown_loss_names_the_choices_and_names_register_once():
    with pytest.raises(ValueError, match="unknown loss 'poisson'; choose one of mse"):
        make_loss("poisson")
    with pytest.raises(ValueError, match="already registered"):
        LOSSES.register("mse", MSE)
    reg = Registry("widget")
    reg.register("w", WeightedMSE)
    assert reg.make("w", weight=[1.0]).weight.tolist() == [1.0] and reg.names() == ("w",)


def test_per_problem_rows_are_selected_and_shared_ones_kept():
    loss = WeightedMSE([1.0, 2.0, 3.0])
    assert loss.rows(torch.tensor([0, 2])).weight.tolist() == [1.0, 3.0]
    assert loss.weight.tolist() == [1.0, 2.0, 3.0]  # the original is untouched
    shared = WeightedMSE([5.0])
    assert shared.rows(torch.tensor([1])) is shared and MSE().rows(torch.tensor([0])) is not None


def _fit(noisy, loss, parallel=1, iterations=15):
    config = make_config("denoise", network=TINY, iterations=iterations, stop="fixed", precision="fp32")
    problem = build_problem(config, noisy, seeds=list(range(len(noisy))), loss=loss)
    return drain(fit(problem, replace(config.fit, parallel=parallel), config.stop_rule(len(noisy)), device=CPU))


def _noisy(n=3, size=16):
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clean = torch.stack([0.5 + 0.3 * torch.sin((4 + k) * xx) * torch.cos(3 * yy) for k in range(n)])[:, None]
    return clean + 0.1 * torch.randn(clean.shape, generator=g)


def test_the_fit_minimises_the_problem_s_loss():
    noisy = _noisy()
    mse = _fit(noisy, None)
    np.testing.assert_array_equal(mse.output, _fit(noisy, MSE()).output)  # MSE is the default
    weighted = _fit(noisy, WeightedMSE([1.0, 1.0, 1.0]))
    np.testing.assert_array_equal(mse.output, weighted.output)
    # Adam is invariant to a constant scale of the loss, the reported values are not
    scaled = _fit(noisy, WeightedMSE([2.0, 2.0, 2.0]))
    np.testing.assert_allclose(scaled.loss_curve[0], 2 * mse.loss_curve[0], rtol=1e-5)


@pytest.mark.parametrize("parallel", [2, 3])  # groups row-select the weights
def test_per_problem_loss_parameters_follow_their_problems(parallel):
    noisy = _noisy()
    weights = [1.0, 3.0, 0.5]
    together = _fit(noisy, WeightedMSE(weights), parallel=parallel)
    for i, w in enumerate(weights):
        config = make_config("denoise", network=TINY, iterations=15, stop="fixed", precision="fp32")
        problem = build_problem(config, noisy[i:i + 1], seeds=[i], loss=WeightedMSE([w]))
        alone = drain(fit(problem, config.fit, config.stop_rule(1), device=CPU))
        # (a group's rows of a batched convolution sum in another order: float noise only; a
        # loss given all three weights would report their sum times the problem's error)
        np.testing.assert_allclose(together.loss_curve[:, i], alone.loss_curve[:, 0], rtol=1e-2)
