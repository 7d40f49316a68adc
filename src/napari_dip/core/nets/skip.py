"""The skip encoder-decoder of Deep Image Prior (Ulyanov et al. 2018), with every knob."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Conv, Upsample, activation, cat_groups, norm, pack, padded_to_multiple, unpack


@dataclass(frozen=True)
class SkipConfig:
    """Architecture of a skip network; one entry per scale in the channel tuples."""

    channels_down: tuple[int, ...] = (128, 128, 128, 128, 128)
    channels_up: tuple[int, ...] = (128, 128, 128, 128, 128)
    channels_skip: tuple[int, ...] = (4, 4, 4, 4, 4)
    code_channels: int = 32
    kernel_down: int = 3
    kernel_up: int = 3
    kernel_skip: int = 1
    activation: str = "leakyrelu"
    downsample: str = "stride"
    upsample: str = "bilinear"
    pad: str = "reflection"
    batchnorm: bool = True
    conv1x1_up: bool = True
    sigmoid: bool = True

    @property
    def scales(self) -> int:
        return len(self.channels_down)

    @property
    def size_multiple(self) -> int:
        return 2 ** self.scales

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest size >= (height, width) the network accepts."""
        return padded_to_multiple(height, width, self.size_multiple)

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of the code for an output of (height, width)."""
        return self.code_channels, height, width

    def build(self, out_channels: int, groups: int = 1) -> "SkipNet":
        return SkipNet(self, out_channels, groups)

    def validate(self) -> "SkipConfig":
        n = len(self.channels_down)
        if n < 1 or len(self.channels_up) != n or len(self.channels_skip) != n:
            raise ValueError("channels_down, channels_up and channels_skip need one entry per "
                             f"scale (got {len(self.channels_down)}, {len(self.channels_up)}, "
                             f"{len(self.channels_skip)})")
        if min(self.channels_down + self.channels_up) < 1 or min(self.channels_skip) < 0:
            raise ValueError("channel counts must be positive (skip channels may be 0)")
        return self


def _act_norm(channels: int, cfg: SkipConfig, groups: int) -> list[nn.Module]:
    return [norm(channels, groups) if cfg.batchnorm else nn.Identity(), activation(cfg.activation)]


class _Level(nn.Module):
    """One scale: a skip branch, a downsampling branch holding the deeper levels, a merge."""

    def __init__(self, i: int, c_in: int, cfg: SkipConfig, groups: int):
        super().__init__()
        self.groups = groups
        d, s, u = cfg.channels_down[i], cfg.channels_skip[i], cfg.channels_up[i]
        self.skip = (nn.Sequential(Conv(c_in, s, cfg.kernel_skip, groups=groups, pad=cfg.pad),
                                   *_act_norm(s, cfg, groups)) if s > 0 else None)
        self.down = nn.Sequential(
            Conv(c_in, d, cfg.kernel_down, groups=groups, pad=cfg.pad, downsample=cfg.downsample),
            *_act_norm(d, cfg, groups),
            Conv(d, d, cfg.kernel_down, groups=groups, pad=cfg.pad),
            *_act_norm(d, cfg, groups))
        last = i == cfg.scales - 1
        self.deeper = None if last else _Level(i + 1, d, cfg, groups)
        k = d if last else cfg.channels_up[i + 1]
        self.up = Upsample(cfg.upsample, k, groups)
        self.merge_norm = norm(s + k, groups) if cfg.batchnorm else nn.Identity()
        layers = [Conv(s + k, u, cfg.kernel_up, groups=groups, pad=cfg.pad), *_act_norm(u, cfg, groups)]
        if cfg.conv1x1_up:
            layers += [Conv(u, u, 1, groups=groups, pad=cfg.pad), *_act_norm(u, cfg, groups)]
        self.merge = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.down(x)
        if self.deeper is not None:
            y = self.deeper(y)
        y = self.up(y)
        if self.skip is not None:
            y = cat_groups([self.skip(x), y], self.groups)
        return self.merge(self.merge_norm(y))


class SkipNet(nn.Module):
    """Maps a code (G, code_channels, H, W), or one (1, ...) for all G, to images (G, out_channels, H, W).

    H and W must be multiples of ``2 ** cfg.scales``; ``groups`` independent networks are
    evaluated at once (see :mod:`.blocks`).
    """

    def __init__(self, cfg: SkipConfig, out_channels: int, groups: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg, self.groups, self.out_channels = cfg, groups, out_channels
        self.body = _Level(0, cfg.code_channels, cfg, groups)
        self.head = Conv(cfg.channels_up[0], out_channels, 1, groups=groups, pad=cfg.pad)
        self.sigmoid = cfg.sigmoid
        self.shares_code = True  # the code only enters convolutions (see .blocks)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        y = self.head(self.body(pack(code)))
        if self.sigmoid:
            y = torch.sigmoid(y)
        return unpack(y, self.groups)
