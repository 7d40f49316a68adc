"""A skip network that works below full resolution: pixel-unshuffled code in, pixel shuffle out.

At 512 x 512 the fast skip network spends most of an iteration in its full- and
half-resolution layers, where few channels make convolutions memory-bound. This network
takes a code at 1/``shuffle`` of the output size and predicts ``shuffle ** 2`` channels per
output channel, which :func:`torch.nn.functional.pixel_shuffle` rearranges into the full-size
image (space-to-depth at the input, depth-to-space at the output): no layer runs at full
resolution.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from .blocks import padded_to_multiple
from .skip import SkipConfig, SkipNet


@dataclass(frozen=True)
class ShuffleSkipConfig(SkipConfig):
    """A :class:`SkipConfig` run at 1/``shuffle`` of the output size (see the module)."""

    shuffle: int = 2

    @property
    def size_multiple(self) -> int:
        return self.shuffle * 2 ** self.scales

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        return padded_to_multiple(height, width, self.size_multiple)

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        return self.code_channels, height // self.shuffle, width // self.shuffle

    def build(self, out_channels: int, groups: int = 1) -> "ShuffleSkipNet":
        return ShuffleSkipNet(self, out_channels, groups)

    def validate(self) -> "ShuffleSkipConfig":
        if not isinstance(self.shuffle, int) or self.shuffle < 1:
            raise ValueError(f"shuffle must be a whole number >= 1, got {self.shuffle!r}")
        return super().validate()


class ShuffleSkipNet(SkipNet):
    """A skip network predicting ``shuffle ** 2`` sub-pixel channels per output channel."""

    def __init__(self, cfg: ShuffleSkipConfig, out_channels: int, groups: int = 1):
        super().__init__(cfg, out_channels * cfg.shuffle ** 2, groups)
        self.out_channels = out_channels

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(super().forward(code), self.cfg.shuffle)
