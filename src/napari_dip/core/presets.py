"""Named settings per task: the papers' settings and fast CPU settings.

Each built-in task (see :mod:`.task`) names one of the preset functions below; a preset
function maps a preset name and the task's factor to a :class:`Preset` with the skip
network, and :func:`for_architecture` swaps in another architecture's network of that size.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .fit import FitSettings
from .nets.resunet import ResUNetConfig
from .nets.shuffle import ShuffleSkipConfig
from .nets.skip import SkipConfig
from .stopping import StopSettings

PRESET_NAMES = ("paper", "fast")

PAPER_NET = SkipConfig()  # 32-channel code, 5 scales of 128, 4 skip channels
FAST_NET = SkipConfig(channels_down=(16, 32, 64, 128, 128), channels_up=(16, 32, 64, 128, 128),
                      channels_skip=(4, 4, 4, 4, 4))
INPAINT_NET = SkipConfig(channels_skip=(128,) * 5, upsample="nearest")
PAPER_RESUNET = ResUNetConfig(channels=(64, 128, 128, 128, 128))
FAST_RESUNET = ResUNetConfig(channels=(16, 32, 64, 128))
# The skip network run at half size (pixel unshuffle/shuffle): no full-resolution layers,
# a fifth of the fast network's CPU time per iteration at 512 x 512 (docs/speed.md, "Full size").
FAST_SHUFFLE = ShuffleSkipConfig(channels_down=(16, 32, 64, 128), channels_up=(16, 32, 64, 128),
                                 channels_skip=(4, 4, 4, 4))
PAPER_SHUFFLE = ShuffleSkipConfig(channels_down=(128,) * 4, channels_up=(128,) * 4, channels_skip=(4,) * 4)
# The networks of the Deep Image Prior tasks other than the skip network, per preset name.
ARCHITECTURE_NETS = {"resunet": {"paper": PAPER_RESUNET, "fast": FAST_RESUNET},
                     "shuffle": {"paper": PAPER_SHUFFLE, "fast": FAST_SHUFFLE}}
ARCHITECTURES = ("skip", *ARCHITECTURE_NETS)

# The exponential-moving-variance rule with a span of 100 outputs, returning the moving mean:
# on 8 real crops it came within 0.10 dB (median) of the oracle, where the windowed variance
# (W 100) stopped too early on MRI and EM crops (docs/defaults.md, docs/quality.md).
AUTO_STOP = StopSettings(variant="emv", window=100, patience=300, min_iterations=200, output="window")


@dataclass(frozen=True)
class Preset:
    """A network, a code, optimisation and stopping settings for one task."""

    name: str
    task: str
    network: Any  # a network config (see core/networks.py)
    fit: FitSettings
    code: str = "uniform"
    stopping: StopSettings = AUTO_STOP
    # Stacks: fit the first slice cold, start every later batch from the weights fitted to the
    # slice before it (measured for denoising, docs/speed.md: about a third of the iterations at cold
    # quality on EM and MRI stacks).
    warm_start: bool = False


def denoise_preset(task: str, name: str, factor: int) -> Preset:
    """Denoising (and representing a clean image, task ``fit``): DIP's 3000 iterations with
    code noise 1/30; fast: a narrower network for 1200, code noise shrinking with the image's
    pixels above 128 x 128. Warm starts for denoising stacks."""
    warm = task == "denoise"
    if name == "paper":
        return Preset(name, task, PAPER_NET, FitSettings(iterations=3000, lr=0.01, code_noise=1 / 30),
                      warm_start=warm)
    # Code noise 1/30 up to 128 x 128 pixels, shrinking as 1 / pixels above (1/480 at 512 x 512):
    # a full-size fit gets 2-3x fewer iterations to the same image (docs/speed.md).
    return Preset(name, task, FAST_NET, FitSettings(iterations=1200, lr=0.01, code_noise=1 / 30,
                                                    code_noise_side=128), warm_start=warm)


def superres_preset(task: str, name: str, factor: int) -> Preset:
    """DIP: x4 for 2000 iterations with code noise 0.03, x8 for 4000 with 0.05; fast: half."""
    fit = (FitSettings(iterations=2000, lr=0.01, code_noise=0.03) if factor <= 4
           else FitSettings(iterations=4000, lr=0.01, code_noise=0.05))
    if name == "paper":
        return Preset(name, task, PAPER_NET, fit)
    return Preset(name, task, FAST_NET, replace(fit, iterations=fit.iterations // 2))


def inpaint_preset(task: str, name: str, factor: int) -> Preset:
    """DIP's inpainting network (wide skips, nearest upsampling) for 6000 iterations; fast: 2000."""
    if name == "paper":
        return Preset(name, task, INPAINT_NET, FitSettings(iterations=6000, lr=0.01, code_noise=0.03))
    return Preset(name, task, FAST_NET, FitSettings(iterations=2000, lr=0.01, code_noise=0.03))


def deconvolve_preset(task: str, name: str, factor: int) -> Preset:
    """Deconvolution (and user operators): denoising's networks and code noise, with the
    longer fits of inpainting, since a blurred image's fine detail is fitted last."""
    if name == "paper":
        return Preset(name, task, PAPER_NET, FitSettings(iterations=5000, lr=0.01, code_noise=1 / 30))
    return Preset(name, task, FAST_NET, FitSettings(iterations=2000, lr=0.01, code_noise=1 / 30))


def for_architecture(preset: Preset, architecture: str) -> Preset:
    """``preset`` with the network of ``architecture`` (skip: the preset's own)."""
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    if architecture == "skip":
        return preset
    preset = replace(preset, network=ARCHITECTURE_NETS[architecture][preset.name])
    if architecture == "shuffle":  # fp32: bf16 was slower for it on the CPU (docs/speed.md)
        preset = replace(preset, fit=replace(preset.fit, precision="fp32"))
    return preset
