"""Named, validated settings per task: the papers' settings and fast CPU settings."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from .fit import FitSettings
from .nets.resunet import ResUNetConfig
from .nets.shuffle import ShuffleSkipConfig
from .nets.skip import SkipConfig
from .stopping import StopSettings

TASKS = ("denoise", "superres", "inpaint", "fit")  # fit: represent a clean image (A = I)
PRESET_NAMES = ("paper", "fast")
ARCHITECTURES = ("skip", "resunet", "shuffle")
DEFAULT_PRESET = {"denoise": "fast", "superres": "fast", "inpaint": "fast", "fit": "fast"}

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
# Subclasses before their base: a config's architecture is the first type it is an instance of.
NETWORK_TYPES = {"shuffle": ShuffleSkipConfig, "skip": SkipConfig, "resunet": ResUNetConfig}

# The exponential-moving-variance rule with a span of 100 outputs, returning the moving mean:
# on 8 real crops it came within 0.10 dB (median) of the oracle, where the windowed variance
# (W 100) stopped too early on MRI and EM crops (docs/defaults.md, docs/quality.md).
AUTO_STOP = StopSettings(variant="emv", window=100, patience=300, min_iterations=200, output="window")


@dataclass(frozen=True)
class Preset:
    """A network, a code, optimisation and stopping settings for one task."""

    name: str
    task: str
    network: Any  # SkipConfig or ResUNetConfig
    fit: FitSettings
    code: str = "uniform"
    stopping: StopSettings = AUTO_STOP
    # Stacks: fit the first slice cold, start every later batch from the weights fitted to the
    # slice before it (measured for denoising, docs/speed.md: about a third of the iterations at cold
    # quality on EM and MRI stacks).
    warm_start: bool = False


def _superres_paper(factor: int) -> FitSettings:
    # DIP: x4 for 2000 iterations with code noise 0.03, x8 for 4000 with 0.05.
    if factor <= 4:
        return FitSettings(iterations=2000, lr=0.01, code_noise=0.03)
    return FitSettings(iterations=4000, lr=0.01, code_noise=0.05)


def _skip_preset(task: str, name: str, factor: int) -> Preset:
    if task in ("denoise", "fit"):
        warm = task == "denoise"
        if name == "paper":
            return Preset(name, task, PAPER_NET, FitSettings(iterations=3000, lr=0.01, code_noise=1 / 30),
                          warm_start=warm)
        return Preset(name, task, FAST_NET, FitSettings(iterations=1200, lr=0.01, code_noise=1 / 30),
                      warm_start=warm)
    if task == "superres":
        if name == "paper":
            return Preset(name, task, PAPER_NET, _superres_paper(factor))
        fit = _superres_paper(factor)
        return Preset(name, task, FAST_NET, replace(fit, iterations=fit.iterations // 2))
    if name == "paper":
        return Preset(name, task, INPAINT_NET, FitSettings(iterations=6000, lr=0.01, code_noise=0.03))
    return Preset(name, task, FAST_NET, FitSettings(iterations=2000, lr=0.01, code_noise=0.03))


def get_preset(task: str, name: str | None = None, *, factor: int = 1, architecture: str = "skip") -> Preset:
    """The preset ``name`` (default: the task's default) for ``task`` with the chosen network."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    name = DEFAULT_PRESET[task] if name is None else name
    if name not in PRESET_NAMES:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    if architecture not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {architecture!r}; choose one of {', '.join(ARCHITECTURES)}")
    preset = _skip_preset(task, name, factor)
    if architecture == "resunet":
        preset = replace(preset, network=PAPER_RESUNET if name == "paper" else FAST_RESUNET)
    elif architecture == "shuffle":  # fp32: bf16 was slower for it on the CPU (docs/speed.md)
        preset = replace(preset, network=PAPER_SHUFFLE if name == "paper" else FAST_SHUFFLE,
                         fit=replace(preset.fit, precision="fp32"))
    return preset
