"""A residual U-Net with dropout between blocks, as a Deep Image Prior network.

Encoder and decoder blocks are Conv-BN-Act-Conv-BN-Act with a shortcut (the identity, or a
1x1 convolution where the channel count changes); decoder blocks take the upsampled deeper
features concatenated with the encoder's features at the same scale (U-Net skips). Dropout
with probability ``dropout`` follows every block but the last. Like the skip network it fits
G problems at once with grouped convolutions (see :mod:`.blocks`).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Conv, GroupDropout, Upsample, activation, cat_groups, norm, pack, padded_to_multiple, unpack

POOLINGS = ("max", "avg")


@dataclass(frozen=True)
class ResUNetConfig:
    """Architecture of a residual U-Net; one entry per scale in ``channels``."""

    channels: tuple[int, ...] = (32, 64, 128, 128)
    code_channels: int = 32
    kernel: int = 3
    dropout: float = 0.1
    activation: str = "leakyrelu"
    downsample: str = "max"
    upsample: str = "bilinear"
    pad: str = "reflection"
    sigmoid: bool = True

    @property
    def size_multiple(self) -> int:
        return 2 ** (len(self.channels) - 1)

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest size >= (height, width) the network accepts."""
        return padded_to_multiple(height, width, self.size_multiple)

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """Shape of the code for an output of (height, width)."""
        return self.code_channels, height, width

    def build(self, out_channels: int, groups: int = 1) -> "ResUNet":
        return ResUNet(self, out_channels, groups)

    def validate(self) -> "ResUNetConfig":
        if len(self.channels) < 1 or min(self.channels) < 1:
            raise ValueError(f"channels needs at least one positive entry, got {self.channels}")
        if self.code_channels < 1:
            raise ValueError(f"code_channels must be positive, got {self.code_channels}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.downsample not in POOLINGS:
            raise ValueError(f"unknown downsampling {self.downsample!r} for the residual U-Net; "
                             f"choose one of {', '.join(POOLINGS)}")
        activation(self.activation)
        return self


class _ResBlock(nn.Module):
    """Conv-BN-Act-Conv-BN-Act plus a shortcut."""

    def __init__(self, c_in: int, c_out: int, cfg: ResUNetConfig, groups: int):
        super().__init__()
        k, pad = cfg.kernel, cfg.pad
        self.body = nn.Sequential(
            Conv(c_in, c_out, k, groups=groups, pad=pad), norm(c_out, groups), activation(cfg.activation),
            Conv(c_out, c_out, k, groups=groups, pad=pad), norm(c_out, groups), activation(cfg.activation))
        self.shortcut = nn.Identity() if c_in == c_out else Conv(c_in, c_out, 1, groups=groups)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


class ResUNet(nn.Module):
    """Maps a code (G, code_channels, H, W), or one (1, ...) for all G if ``shares_code``, to
    images (G, out_channels, H, W).

    H and W must be multiples of ``cfg.size_multiple``. Dropout is active in training mode;
    :meth:`dropout_off` evaluates without it while BatchNorm keeps per-image statistics.
    """

    def __init__(self, cfg: ResUNetConfig, out_channels: int, groups: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg, self.groups, self.out_channels = cfg, groups, out_channels
        ch = cfg.channels
        self.encoders = nn.ModuleList(
            [_ResBlock(cfg.code_channels if i == 0 else ch[i - 1], ch[i], cfg, groups) for i in range(len(ch))])
        self.pool = nn.MaxPool2d(2) if cfg.downsample == "max" else nn.AvgPool2d(2)
        self.ups = nn.ModuleList([Upsample(cfg.upsample, ch[i + 1], groups) for i in range(len(ch) - 1)])
        self.decoders = nn.ModuleList(
            [_ResBlock(ch[i + 1] + ch[i], ch[i], cfg, groups) for i in range(len(ch) - 1)])
        self.drop = GroupDropout(cfg.dropout, groups)
        self.head = Conv(ch[0], out_channels, 1, groups=groups)
        # the code only enters convolutions (see .blocks), unless the first shortcut is the identity
        self.shares_code = cfg.code_channels != ch[0]

    def draw_from(self, generators: list) -> None:
        """Draw each problem's dropout masks from its generator (one per packed problem)."""
        self.drop.generators = list(generators)

    @contextlib.contextmanager
    def dropout_off(self):
        """Within this block the dropout layer passes features unchanged."""
        was = self.drop.training
        self.drop.eval()
        try:
            yield self
        finally:
            self.drop.train(was)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = pack(code)
        features = []
        for i, enc in enumerate(self.encoders):
            x = self.drop(enc(x if i == 0 else self.pool(x)))
            features.append(x)
        for i in reversed(range(len(self.decoders))):
            x = self.decoders[i](cat_groups([features[i], self.ups[i](x)], self.groups))
            if i > 0:
                x = self.drop(x)
        y = self.head(x)
        if self.cfg.sigmoid:
            y = torch.sigmoid(y)
        return unpack(y, self.groups)
