"""Building blocks shared by the networks.

Every network here fits ``G`` independent problems at once. Tensors travel as
``(1, G * C, H, W)`` with the channels of problem ``g`` stored contiguously, and every
convolution is grouped by ``G``; normalisation statistics are per channel, hence per
problem. With ``G = 1`` the blocks are ordinary layers. A code shared by all ``G``
problems may enter as ``(1, C, H, W)`` where a network's first layers are convolutions
(``shares_code``): they take it once (:class:`GroupConv2d`).
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = ("leakyrelu", "relu", "swish", "mish")
DOWNSAMPLERS = ("stride", "max", "avg")
UPSAMPLERS = ("bilinear", "nearest", "transposed")
PADDINGS = ("reflection", "zero")


def activation(name: str) -> nn.Module:
    """An activation by name: LeakyReLU(0.2), ReLU, Swish (SiLU) or Mish."""
    key = name.lower()
    if key == "leakyrelu":
        return nn.LeakyReLU(0.2, inplace=True)
    if key == "relu":
        return nn.ReLU(inplace=True)
    if key == "swish":
        return nn.SiLU(inplace=True)
    if key == "mish":
        return nn.Mish(inplace=True)
    raise ValueError(f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}")


class ReflectionPad(nn.Module):
    """Reflection padding in the input's dtype (CPU autocast would run it in fp32 and cast twice)."""

    def __init__(self, padding: int):
        super().__init__()
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (self.padding,) * 4
        if x.device.type == "meta":  # memory estimates; autocast has no meta device
            return F.pad(x, pad, mode="reflect")
        with torch.autocast(x.device.type, enabled=False):
            return F.pad(x, pad, mode="reflect")

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


def memory_format(x: torch.Tensor) -> torch.memory_format:
    """channels_last for a 4-d tensor stored that way, else the default layout."""
    if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format


class _DenseGrad(torch.autograd.Function):
    """Identity whose backward makes the gradient dense in the input's memory layout.

    A slice of a channels-last gradient (what concatenation passes back) is strided, and
    upsampling and activation backward kernels are several times slower on strided tensors.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.layout = memory_format(x)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        return grad.contiguous(memory_format=ctx.layout)


class GroupConv2d(nn.Conv2d):
    """A grouped convolution that also takes one input shared by every group (a stack's
    slices share their code): then it is a dense convolution with every group's filters,
    the grouped result on copies of the input, without the copies."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.groups > 1 and x.shape[1] == self.in_channels // self.groups:
            return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation)
        return super().forward(x)


class Conv(nn.Sequential):
    """Padding + grouped convolution; ``downsample`` adds stride 2 or a 2x2 pool."""

    def __init__(self, c_in: int, c_out: int, kernel: int, *, groups: int = 1,
                 pad: str = "reflection", bias: bool = True, downsample: str | None = None):
        layers: list[nn.Module] = []
        p = (kernel - 1) // 2
        if p > 0:
            if pad == "reflection":
                layers.append(ReflectionPad(p))
            elif pad != "zero":
                raise ValueError(f"unknown padding {pad!r}; choose one of {', '.join(PADDINGS)}")
        stride = 2 if downsample == "stride" else 1
        layers.append(GroupConv2d(groups * c_in, groups * c_out, kernel, stride=stride,
                                  padding=p if pad == "zero" else 0, bias=bias, groups=groups))
        if downsample == "max":
            layers.append(nn.MaxPool2d(2))
        elif downsample == "avg":
            layers.append(nn.AvgPool2d(2))
        elif downsample not in (None, "stride"):
            raise ValueError(f"unknown downsampling {downsample!r}; choose one of "
                             f"{', '.join(DOWNSAMPLERS)}")
        super().__init__(*layers)


class GroupDropout(nn.Module):
    """Dropout for ``groups`` packed problems, each drawing its masks from its own generator.

    The fitting loop hands it one generator per problem (``generators``), so a fit is
    reproducible from its seeds and a problem draws the same masks in a batch as alone;
    without generators it draws from torch's global generator, like ``nn.Dropout``.
    """

    def __init__(self, p: float, groups: int = 1):
        super().__init__()
        self.p, self.groups = p, groups
        self.generators: list[torch.Generator] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.generators is None:
            return F.dropout(x, self.p, training=True)
        _, c, h, w = x.shape
        per = c // len(self.generators)
        keep = torch.cat([torch.rand(per, h, w, generator=g, device=x.device) for g in self.generators]) >= self.p
        return x * (keep.to(x.dtype) / (1 - self.p)).unsqueeze(0)

    def extra_repr(self) -> str:
        return f"p={self.p}, groups={self.groups}"


def norm(channels: int, groups: int = 1) -> nn.Module:
    """BatchNorm over the packed channels (statistics per problem and channel)."""
    return nn.BatchNorm2d(groups * channels)


class Upsample(nn.Module):
    """2x upsampling: bilinear, nearest, or a learned transposed convolution."""

    def __init__(self, mode: str, channels: int, groups: int = 1):
        super().__init__()
        if mode not in UPSAMPLERS:
            raise ValueError(f"unknown upsampling {mode!r}; choose one of {', '.join(UPSAMPLERS)}")
        self.mode = mode
        self.deconv = (nn.ConvTranspose2d(groups * channels, groups * channels, 2, stride=2,
                                          groups=groups) if mode == "transposed" else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deconv is not None:
            return self.deconv(x)
        if self.mode == "bilinear":
            return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return F.interpolate(x, scale_factor=2, mode="nearest")


def cat_groups(tensors: list[torch.Tensor], groups: int) -> torch.Tensor:
    """Concatenate packed tensors along channels, keeping each problem's channels together.

    The result keeps the inputs' memory layout; the inputs get dense gradients.
    """
    tensors = [_DenseGrad.apply(t) for t in tensors]
    n, _, h, w = tensors[0].shape
    if memory_format(tensors[0]) == torch.channels_last:  # torch.cat would return NCHW
        parts = [t.permute(0, 2, 3, 1).reshape(n, h, w, groups, -1) for t in tensors]
        return torch.cat(parts, dim=4).reshape(n, h, w, -1).permute(0, 3, 1, 2)
    if groups == 1:
        return torch.cat(tensors, dim=1)
    parts = [t.reshape(n, groups, -1, h, w) for t in tensors]
    return torch.cat(parts, dim=2).reshape(n, -1, h, w)


def pack(x: torch.Tensor) -> torch.Tensor:
    """(G, C, H, W) -> (1, G*C, H, W)."""
    return x.reshape(1, -1, *x.shape[-2:])


def unpack(x: torch.Tensor, groups: int) -> torch.Tensor:
    """(1, G*C, H, W) -> (G, C, H, W)."""
    return x.reshape(groups, -1, *x.shape[-2:])


def count_parameters(net: nn.Module, groups: int = 1) -> int:
    """Trainable parameters of one problem's network."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad) // groups


def padded_to_multiple(height: int, width: int, multiple: int) -> tuple[int, int]:
    """The smallest size >= (height, width) made of whole multiples, at least two per side."""
    return (max(-(-height // multiple) * multiple, 2 * multiple),
            max(-(-width // multiple) * multiple, 2 * multiple))
