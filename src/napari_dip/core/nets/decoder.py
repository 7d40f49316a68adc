"""The Deep Decoder (Heckel & Hand 2019): 1x1 convolutions, upsampling, ReLU, normalisation.

Sizes, for an image of H x W, integer input scale ``s`` and ``l`` blocks:

- ``padded_size`` rounds H and W up to multiples of s (callers pad by reflection and crop
  the result back), so the fitted size is ``H' = s * ceil(H / s)``, ``W' = s * ceil(W / s)``;
- the code is ``h0 x w0 = H' / s x W' / s``;
- block ``i`` (1..l) upsamples to ``round(h0 * s ** (i / l))`` x ``round(w0 * s ** (i / l))``:
  the factor s is spread evenly (geometrically) over the blocks and the last block lands
  exactly on H' x W'. With ``s = 1`` nothing is upsampled.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .blocks import Conv, norm, pack, unpack

DECODER_UPSAMPLERS = ("bilinear", "nearest")


@dataclass(frozen=True)
class DecoderConfig:
    """Deep Decoder architecture: ``channels`` k (one int for every block, or one per block),
    ``blocks`` l and input ``scale`` s (the code is H/s x W/s). ``channels_last`` runs the
    layers in the channels-last memory layout (same results, about 2x faster on CPUs)."""

    channels: int | tuple[int, ...] = 64
    blocks: int = 6
    scale: int = 16
    upsample: str = "bilinear"
    sigmoid: bool = True
    channels_last: bool = True

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels of each block's output (its input is the previous width; the code's is the first)."""
        if isinstance(self.channels, int):
            return (self.channels,) * self.blocks
        return tuple(self.channels)

    @property
    def code_channels(self) -> int:
        return self.widths[0]

    @property
    def size_multiple(self) -> int:
        return self.scale

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The smallest multiples of the scale >= (height, width)."""
        s = self.scale
        return -(-height // s) * s, -(-width // s) * s

    def code_shape(self, height: int, width: int) -> tuple[int, int, int]:
        """(k, ceil(H / s), ceil(W / s))."""
        return self.code_channels, -(-height // self.scale), -(-width // self.scale)

    def sizes(self, code_height: int, code_width: int) -> list[tuple[int, int]]:
        """The output size of every block for a code of (code_height, code_width)."""
        s, n = self.scale, self.blocks
        return [(round(code_height * s ** (i / n)), round(code_width * s ** (i / n))) if i < n
                else (code_height * s, code_width * s) for i in range(1, n + 1)]

    def build(self, out_channels: int, groups: int = 1) -> "DeepDecoder":
        return DeepDecoder(self, out_channels, groups)

    def validate(self) -> "DecoderConfig":
        if not isinstance(self.blocks, int) or self.blocks < 1:
            raise ValueError(f"blocks must be a positive integer, got {self.blocks!r}")
        widths = self.widths
        if len(widths) != self.blocks:
            raise ValueError(f"channels needs one entry per block: {self.blocks} blocks, "
                             f"{len(widths)} channel counts")
        if min(widths) < 1:
            raise ValueError(f"channels must be positive, got {self.channels!r}")
        if not isinstance(self.scale, int) or self.scale < 1:
            raise ValueError(f"scale must be a positive integer (e.g. 8 = 2^3), got {self.scale!r}")
        if self.upsample not in DECODER_UPSAMPLERS:
            raise ValueError(f"unknown upsampling {self.upsample!r}; choose one of "
                             f"{', '.join(DECODER_UPSAMPLERS)}")
        return self

    def parameters(self, out_channels: int = 1) -> int:
        """Trainable parameters of one decoder (1x1 weights and the norms' scale and shift)."""
        widths = self.widths
        ins = (widths[0],) + widths[:-1]
        return sum(a * b + 2 * b for a, b in zip(ins, widths)) + widths[-1] * out_channels


class DeepDecoder(nn.Module):
    """Maps codes (G, k, h0, w0), or one (1, ...) for all, to images (G, out_channels, s * h0,
    s * w0); G decoders at once."""

    def __init__(self, cfg: DecoderConfig, out_channels: int, groups: int = 1):
        super().__init__()
        cfg.validate()
        self.cfg, self.groups, self.out_channels = cfg, groups, out_channels
        widths = cfg.widths
        ins = (widths[0],) + widths[:-1]
        self.convs = nn.ModuleList(Conv(a, b, 1, groups=groups, bias=False) for a, b in zip(ins, widths))
        self.norms = nn.ModuleList(norm(b, groups) for b in widths)
        self.head = Conv(widths[-1], out_channels, 1, groups=groups, bias=False)
        self.shares_code = True  # the code only enters a convolution (see .blocks)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        x = pack(code)
        if self.cfg.channels_last:  # about 2x faster on CPUs (upsampling backward dominates)
            x = x.contiguous(memory_format=torch.channels_last)
        mode = self.cfg.upsample
        for conv, bn, hw in zip(self.convs, self.norms, self.cfg.sizes(*code.shape[-2:])):
            x = conv(x)
            if tuple(x.shape[-2:]) != hw:
                x = nn.functional.interpolate(x, size=hw, mode=mode,
                                              **({"align_corners": False} if mode == "bilinear" else {}))
            x = bn(torch.relu(x))
        y = self.head(x)
        if self.cfg.sigmoid:
            y = torch.sigmoid(y)
        return unpack(y.contiguous(), self.groups)
