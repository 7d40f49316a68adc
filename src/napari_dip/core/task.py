"""A task = operator + network + code + stopping rule + preset, resolved and validated once."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import torch

from . import operators
from .fit import FitSettings, Problem
from .inputs import make_code
from .losses import MSE, Loss
from .noise_setup import NoiseSetup
from .nets.factory import build_network
from .presets import NETWORK_TYPES, get_preset
from .stopping import STOP_RULES, StopSettings, make_stop_rule


@dataclass(frozen=True)
class TaskConfig:
    """Everything a fit needs besides the data; build it with :func:`make_config`."""

    task: str
    preset: str
    network: Any  # a network config: build(out_channels, groups), padded_size, code_shape
    fit: FitSettings
    code: str = "uniform"
    factor: int = 1
    stop: str = "auto"
    seed: int = 0
    extra: dict = field(default_factory=dict)
    stopping: StopSettings = field(default_factory=StopSettings)
    architecture: str = "skip"
    warm_start: bool = False  # a stack's later batches start from the previous slice's weights
    noise: NoiseSetup = field(default_factory=NoiseSetup)  # denoising's noise model and loss

    def stop_rule(self, n_problems: int):
        return make_stop_rule(self.stop, n_problems, self.stopping)


def make_config(task: str, *, preset: str | None = None, factor: int = 1,
                iterations: int | None = None, lr: float | None = None,
                code_noise: float | None = None, ema: float | None = None,
                stop: str = "auto", seed: int = 0, precision: str | None = None,
                preview_every: int | None = None, parallel: int | None = None, network: dict | Any | None = None,
                code: str | None = None, architecture: str | None = None,
                stopping: dict | StopSettings | None = None, warm_start: bool | None = None,
                noise: str = "gaussian", noise_params=None, noise_loss: str | None = None) -> TaskConfig:
    """Resolve a preset and the caller's overrides into a validated :class:`TaskConfig`.

    ``architecture`` picks the network: ``skip`` (default) or ``resunet`` (residual U-Net
    with dropout). ``network`` is either a full network config or a dict of fields to change
    in the preset's (skip: ``channels_down``, ``activation``...; resunet: ``channels``,
    ``dropout``...). ``stopping`` is a :class:`StopSettings` or a dict of its fields to
    change in the preset's (``variant``, ``window``, ``patience``, ``min_iterations``...).
    ``noise`` ('gaussian', 'auto', 'poisson-gaussian', 'poisson', 'rician'), ``noise_params``
    ((a, b) of variance = a * x + b in the data's units instead of estimating them per slice)
    and ``noise_loss`` (the loss for modelled noise; default the benchmark's choice) are
    denoising's noise model (:mod:`.noise_setup`).
    ``warm_start`` (default: the preset's; on for denoising) starts a stack's later batches
    from the weights fitted to the slice before them.
    """
    if task == "superres":
        operators.Downsample(factor)  # validates the factor
    elif factor != 1:
        raise ValueError(f"factor is only for super-resolution, got factor={factor} for {task!r}")
    if stop not in STOP_RULES:
        raise ValueError(f"unknown stopping rule {stop!r}; choose one of {', '.join(STOP_RULES)}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    p = get_preset(task, preset, factor=factor, architecture=architecture or "skip")
    overrides = {k: v for k, v in dict(iterations=iterations, lr=lr, code_noise=code_noise, ema=ema,
                                       precision=precision, preview_every=preview_every,
                                       parallel=parallel).items()
                 if v is not None}
    fit = replace(p.fit, **overrides).validate()
    net = p.network
    if isinstance(network, dict):
        fields = type(net).__dataclass_fields__
        unknown = set(network) - set(fields)
        if unknown:
            raise ValueError(f"unknown network option(s) {', '.join(sorted(unknown))}; choose from "
                             f"{', '.join(fields)}")
        net = replace(net, **{k: tuple(v) if isinstance(v, list) else v for k, v in network.items()})
    elif network is not None:
        net = network
    arch = next((k for k, t in NETWORK_TYPES.items() if isinstance(net, t)), architecture or "custom")
    code = code or p.code
    if code == "meshgrid" and "code_channels" in getattr(type(net), "__dataclass_fields__", {}):
        net = replace(net, code_channels=2)
    net.validate()
    return TaskConfig(task=task, preset=p.name, network=net, fit=fit, code=code,
                      factor=factor, stop=stop, seed=seed, stopping=_stopping(p.stopping, stopping),
                      architecture=arch, warm_start=p.warm_start if warm_start is None else bool(warm_start),
                      noise=_noise(task, noise, noise_params, noise_loss))


def _noise(task: str, noise: str, params, loss: str | None) -> NoiseSetup:
    setup = NoiseSetup(noise, None if params is None else tuple(float(v) for v in params),
                       **({} if loss is None else {"loss": loss}))
    if setup.modelled and task != "denoise":
        raise ValueError(f"noise models are for denoising; {task!r} fits use the squared error")
    return setup


def _stopping(base: StopSettings, change: dict | StopSettings | None) -> StopSettings:
    if isinstance(change, StopSettings):
        return change.validate()
    if change is None:
        return base.validate()
    unknown = set(change) - set(StopSettings.__dataclass_fields__)
    if unknown:
        raise ValueError(f"unknown stopping option(s) {', '.join(sorted(unknown))}; choose from "
                         f"{', '.join(StopSettings.__dataclass_fields__)}")
    return replace(base, **change).validate()


def make_operator(config: TaskConfig, mask: torch.Tensor | None = None):
    """The forward operator of a task (mask: (G, 1 or C, H, W) for inpainting)."""
    if config.task == "superres":
        return operators.Downsample(config.factor)
    if config.task == "inpaint":
        if mask is None:
            raise ValueError("inpainting needs a mask (1 = known pixel, 0 = to fill)")
        return operators.Mask(mask)
    return operators.Identity()


def build_problem(config: TaskConfig, observed: torch.Tensor, *, seeds: Sequence[int],
                  mask: torch.Tensor | None = None,
                  ground_truth: torch.Tensor | None = None, loss: Loss | None = None) -> Problem:
    """Networks, codes and operator for G observations (G, C, h, w), one seed each.

    ``loss`` is the data fidelity (default: mean squared error, see :mod:`.losses`).

    The restored size is (h * factor, w * factor) and must suit the network (see
    ``config.network.padded_size``).
    """
    g, c, h, w = observed.shape
    if len(seeds) != g:
        raise ValueError(f"need one seed per problem: {g} problems, {len(seeds)} seeds")
    height, width = h * config.factor, w * config.factor
    make = lambda groups: config.network.build(c, groups)  # noqa: E731
    net = build_network(make, seeds)
    codes = []
    for s in seeds:
        gen = torch.Generator().manual_seed(int(s) + 2)
        codes.append(make_code(config.code, *config.network.code_shape(height, width), generator=gen))
    return Problem(network=net, code=torch.stack(codes), operator=make_operator(config, mask),
                   observed=observed, seeds=list(seeds), ground_truth=ground_truth,
                   make_network=make, loss=MSE() if loss is None else loss)
