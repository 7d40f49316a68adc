"""The task slot: a task = operator + presets + the inputs it needs; resolved and validated once.

A task is a :class:`TaskSpec` registered in :data:`TASKS`: its name, a factory for its
forward operator (:mod:`.operators`), the inputs that factory needs (a mask, a PSF, a user's
operator) and which of them are image-shaped (one per slice of a stack), whether it takes a
super-resolution factor, its preset function (:mod:`.presets`) and its default preset.
:func:`make_config` turns a task name, a preset and the caller's overrides into a validated
:class:`TaskConfig`; :func:`build_problem` turns a config and observations into the
:class:`~napari_dip.core.fit.Problem` the loop fits.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import torch

from . import operators
from .fit import FitSettings, Problem
from .inputs import make_code
from .losses import MSE, DeblurMSE, Loss
from .noise_setup import NoiseSetup
from .nets.factory import build_network
from .networks import network_name
from .presets import (PRESET_NAMES, Preset, deconvolve_preset, denoise_preset, for_architecture,
                      inpaint_preset, superres_preset)
from .slots import Registry
from .stopping import STOP_RULES, StopSettings, make_stop_rule


@dataclass(frozen=True)
class TaskSpec:
    """One task of the engine.

    ``operator(factor, **inputs)`` builds the forward operator of a batch of problems from
    the task's ``inputs`` (image-shaped ones, listed in ``slice_inputs``, arrive as
    (G, 1 or C, h, w) tensors, one row per slice; the others as given); ``preset(task, name,
    factor)`` gives a preset. ``crop``: the network's output is cropped to the image's size
    before the operator, and the observation is fitted as it is; otherwise the observation
    is padded by reflection to the network's size (the operator then sees padded images).
    ``loss(**inputs)``, if given, builds the task's default data fidelity from the same
    inputs (otherwise mean squared error); a caller's loss replaces it.
    """

    name: str
    title: str  # how messages name the task ("deconvolution needs a PSF")
    operator: Callable[..., Any]
    preset: Callable[[str, str, int], Preset]
    inputs: dict[str, str] = field(default_factory=dict)  # required input -> what it is
    slice_inputs: tuple[str, ...] = ()
    factor: bool = False
    crop: bool = False
    default_preset: str = "fast"
    loss: Callable[..., Any] | None = None


TASKS: Registry[TaskSpec] = Registry("task")


def register_task(spec: TaskSpec) -> TaskSpec:
    """Register ``spec`` under its name."""
    TASKS.register(spec.name, lambda: spec)
    return spec


def get_task(name: str) -> TaskSpec:
    return TASKS.make(name)


register_task(TaskSpec("denoise", "denoising", lambda factor: operators.Identity(), denoise_preset))
register_task(TaskSpec("superres", "super-resolution", lambda factor: operators.Downsample(factor),
                       superres_preset, factor=True))
register_task(TaskSpec("inpaint", "inpainting", lambda factor, mask: operators.Mask(mask), inpaint_preset,
                       inputs={"mask": "1 = known pixel, 0 = to fill"}, slice_inputs=("mask",)))
# fit: represent a clean image (A = I)
register_task(TaskSpec("fit", "fitting", lambda factor: operators.Identity(), denoise_preset))
register_task(TaskSpec("deconvolve", "deconvolution",
                       lambda factor, psf, boundary="reflect": operators.Convolve(psf, boundary=boundary),
                       deconvolve_preset, inputs={"psf": "the point spread function, a 2D array"}, crop=True,
                       loss=lambda psf, boundary="reflect": DeblurMSE(psf)))
register_task(TaskSpec("restore", "restoration", lambda factor, operator: operator, deconvolve_preset,
                       inputs={"operator": "a callable on (N, C, H, W) tensors"}, crop=True))


def get_preset(task: str, name: str | None = None, *, factor: int = 1, architecture: str = "skip") -> Preset:
    """The preset ``name`` (default: the task's default) for ``task`` with the chosen network."""
    spec = get_task(task)
    name = spec.default_preset if name is None else name
    if name not in PRESET_NAMES:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    return for_architecture(spec.preset(task, name, factor), architecture)


@dataclass(frozen=True)
class TaskConfig:
    """Everything a fit needs besides the data; build it with :func:`make_config`."""

    task: str
    preset: str
    network: Any  # a network config (see core/networks.py)
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
    # Operator inputs shared by every slice, as JSON-able values (a PSF as nested lists), so
    # that they are part of the settings a batch run's resume key hashes.
    inputs: tuple[tuple[str, Any], ...] = ()

    @property
    def spec(self) -> TaskSpec:
        return get_task(self.task)

    def stop_rule(self, n_problems: int):
        return make_stop_rule(self.stop, n_problems, self.stopping)


def make_config(task: str, *, preset: str | None = None, factor: int = 1,
                iterations: int | None = None, lr: float | None = None,
                code_noise: float | None = None, ema: float | None = None,
                stop: str = "auto", seed: int = 0, precision: str | None = None,
                preview_every: int | None = None, parallel: int | None = None, network: dict | Any | None = None,
                code: str | None = None, architecture: str | None = None,
                stopping: dict | StopSettings | None = None, warm_start: bool | None = None,
                noise: str = "gaussian", noise_params=None, noise_loss: str | None = None,
                inputs: dict | None = None) -> TaskConfig:
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
    from the weights fitted to the slice before them. ``inputs``: the task's operator inputs
    shared by every slice (a PSF, a boundary), kept in the config as JSON-able values (arrays
    as nested lists).
    """
    spec = get_task(task)
    if spec.factor:
        spec.operator(factor)  # validates the factor
    elif factor != 1:
        raise ValueError(f"factor is only for super-resolution, got factor={factor} for {task!r}")
    if stop not in STOP_RULES:
        raise ValueError(f"unknown stopping rule {stop!r}; choose one of {', '.join(STOP_RULES)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
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
    arch = network_name(net)
    code = code or p.code
    if code == "meshgrid" and "code_channels" in getattr(type(net), "__dataclass_fields__", {}):
        net = replace(net, code_channels=2)
    net.validate()
    kept = tuple(sorted((k, _jsonable(v)) for k, v in (inputs or {}).items() if v is not None))
    if kept:
        check_inputs_known(spec, dict(kept))
    return TaskConfig(inputs=kept, task=task, preset=p.name, network=net, fit=fit, code=code,
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


def _jsonable(value):
    """Arrays and tensors as nested lists of numbers; anything else as it is."""
    return value.tolist() if hasattr(value, "tolist") else value


def check_inputs_known(spec: TaskSpec, inputs: dict) -> None:
    """A ValueError naming an input the task does not take."""
    extra = {k for k in set(inputs) - set(spec.inputs) - _optional_inputs(spec) if inputs[k] is not None}
    if extra:
        raise ValueError(f"{spec.title} takes no {', '.join(sorted(extra))}")


def check_inputs(config: TaskConfig, inputs: dict) -> None:
    """A ValueError naming the first input the task needs and was not given, or one it
    does not take."""
    spec = config.spec
    for name, what in spec.inputs.items():
        if inputs.get(name) is None:
            raise ValueError(f"{spec.title} needs a {name} ({what})")
    check_inputs_known(spec, inputs)


def _optional_inputs(spec: TaskSpec) -> set[str]:
    import inspect
    params = inspect.signature(spec.operator).parameters
    return {k for k, p in params.items() if p.default is not inspect.Parameter.empty}


def make_operator(config: TaskConfig, mask: torch.Tensor | None = None, **inputs):
    """The forward operator of a task from its inputs (mask: (G, 1 or C, H, W) for inpainting)."""
    inputs = {**dict(config.inputs), **inputs}
    if mask is not None:
        inputs["mask"] = mask
    check_inputs(config, inputs)
    return config.spec.operator(config.factor, **{k: v for k, v in inputs.items() if v is not None})


def default_loss(config: TaskConfig, inputs: dict) -> Loss:
    """The task's own data fidelity for these operator inputs (see :class:`TaskSpec`), else
    mean squared error."""
    spec = config.spec
    return MSE() if spec.loss is None else spec.loss(**{k: v for k, v in inputs.items() if k not in spec.slice_inputs})


def build_problem(config: TaskConfig, observed: torch.Tensor, *, seeds: Sequence[int],
                  mask: torch.Tensor | None = None,
                  ground_truth: torch.Tensor | None = None, loss: Loss | None = None,
                  inputs: dict | None = None, size: tuple[int, int] | None = None) -> Problem:
    """Networks, codes and operator for G observations (G, C, h, w), one seed each.

    The restored size is (h * factor, w * factor) and must suit the network (see
    ``config.network.padded_size``). For a task that crops (``spec.crop``), ``size`` is the
    image's size (default: the observation's); the network fits its padded size and the
    operator sees its output cropped to ``size``. ``inputs`` are the operator's (see
    :class:`TaskSpec`); ``loss`` is the data fidelity (default: mean squared error, see
    :mod:`.losses`).
    """
    g, c, h, w = observed.shape
    if len(seeds) != g:
        raise ValueError(f"need one seed per problem: {g} problems, {len(seeds)} seeds")
    op = make_operator(config, **{**(inputs or {}), **({} if mask is None else {"mask": mask})})
    if config.spec.crop:
        size = (h, w) if size is None else tuple(size)
        height, width = config.network.padded_size(*size)
        op = operators.Cropped(op, *size)
    else:
        height, width = h * config.factor, w * config.factor
    make = lambda groups: config.network.build(c, groups)  # noqa: E731
    net = build_network(make, seeds)
    codes = []
    for s in seeds:
        gen = torch.Generator().manual_seed(int(s) + 2)
        codes.append(make_code(config.code, *config.network.code_shape(height, width), generator=gen))
    return Problem(network=net, code=torch.stack(codes), operator=op,
                   observed=observed, seeds=list(seeds), ground_truth=ground_truth,
                   make_network=make, loss=default_loss(config, inputs or {}) if loss is None else loss,
                   shared_code=len(set(seeds)) == 1)  # one seed: one code, one noise stream
