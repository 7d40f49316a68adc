"""Named, validated settings per task: the papers' settings and fast CPU settings."""
from __future__ import annotations

from dataclasses import dataclass, replace

from .fit import FitSettings
from .nets.skip import SkipConfig

TASKS = ("denoise", "superres", "inpaint")
PRESET_NAMES = ("paper", "fast")
DEFAULT_PRESET = {"denoise": "fast", "superres": "fast", "inpaint": "fast"}

PAPER_NET = SkipConfig()  # 32-channel code, 5 scales of 128, 4 skip channels
FAST_NET = SkipConfig(channels_down=(16, 32, 64, 128, 128), channels_up=(16, 32, 64, 128, 128),
                      channels_skip=(4, 4, 4, 4, 4))
INPAINT_NET = SkipConfig(channels_skip=(128,) * 5, upsample="nearest")


@dataclass(frozen=True)
class Preset:
    """A network, a code and optimisation settings for one task."""

    name: str
    task: str
    network: SkipConfig
    fit: FitSettings
    code: str = "uniform"


def _superres_paper(factor: int) -> FitSettings:
    # DIP: x4 for 2000 iterations with code noise 0.03, x8 for 4000 with 0.05.
    if factor <= 4:
        return FitSettings(iterations=2000, lr=0.01, code_noise=0.03)
    return FitSettings(iterations=4000, lr=0.01, code_noise=0.05)


def get_preset(task: str, name: str | None = None, *, factor: int = 1) -> Preset:
    """The preset ``name`` (default: the task's default) for ``task``."""
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; choose one of {', '.join(TASKS)}")
    name = DEFAULT_PRESET[task] if name is None else name
    if name not in PRESET_NAMES:
        raise ValueError(f"unknown preset {name!r}; choose one of {', '.join(PRESET_NAMES)}")
    if task == "denoise":
        if name == "paper":
            return Preset(name, task, PAPER_NET, FitSettings(iterations=3000, lr=0.01, code_noise=1 / 30))
        return Preset(name, task, FAST_NET, FitSettings(iterations=1200, lr=0.01, code_noise=1 / 30))
    if task == "superres":
        if name == "paper":
            return Preset(name, task, PAPER_NET, _superres_paper(factor))
        fit = _superres_paper(factor)
        return Preset(name, task, FAST_NET, replace(fit, iterations=fit.iterations // 2))
    if name == "paper":
        return Preset(name, task, INPAINT_NET, FitSettings(iterations=6000, lr=0.01, code_noise=0.03))
    return Preset(name, task, FAST_NET, FitSettings(iterations=2000, lr=0.01, code_noise=0.03))
