"""The network slot: configs that build the generators G of a fit.

A network config is a frozen dataclass with

- ``build(out_channels, groups) -> nn.Module``: ``groups`` independent networks packed into
  one module (see "Packing" below) that maps codes (G, Cz, h0, w0) to images (G, C, H, W);
- ``size_multiple``: H and W the network produces must be multiples of it;
- ``padded_size(H, W) -> (H', W')``: the smallest size >= (H, W) it produces (callers pad
  and crop back);
- ``code_shape(H, W) -> (Cz, h0, w0)``: the code for an output of H x W;
- ``validate() -> self``: a ValueError naming the field when a setting is out of range.

The module it builds may also set ``shares_code = True`` (the code only enters
convolutions, so G problems with one code take it once, as (1, Cz, h0, w0)) and define
``draw_from(generators)`` / ``dropout_off()`` (dropout drawn from each problem's own random
stream; judged with dropout off).

Packing: a module built with ``groups=G`` holds G problems along dim 0 of every tensor of
its ``state_dict()`` that has a dimension (problem g owns the g-th of G equal blocks;
grouped convolutions and per-group norms give that, :mod:`.nets.blocks`); 0-d tensors
(BatchNorm's counters) are shared. That one rule is what :mod:`.nets.factory` relies on to
seed, split, merge and warm-start problems; :func:`check_packing` tests a config for it.

Register a new network with ``NETWORKS.register("name", ConfigClass)``.
"""
from __future__ import annotations

import torch

from .nets.decoder import DecoderConfig
from .nets.resunet import ResUNetConfig
from .nets.shuffle import ShuffleSkipConfig
from .nets.skip import SkipConfig
from .slots import Registry

NETWORKS = Registry("network")
NETWORKS.register("skip", SkipConfig)
NETWORKS.register("resunet", ResUNetConfig)
NETWORKS.register("shuffle", ShuffleSkipConfig)
NETWORKS.register("decoder", DecoderConfig)


def network_name(config) -> str:
    """The registered name of a network config's type, or ``custom``."""
    return next((name for name in NETWORKS if type(config) is NETWORKS.get(name)), "custom")


def check_packing(config, out_channels: int = 1, groups: int = 3) -> None:
    """Raise a ValueError unless ``config.build(out_channels, groups)`` packs its problems by
    the packing rule: each state tensor with a dimension is ``groups`` blocks of the single
    network's along dim 0, and problem g alone maps its code to its image as the single
    network with those weights does."""
    from .nets.factory import build_network, copy_problem

    single = config.build(out_channels, 1)
    shapes = {k: v.shape for k, v in config.build(out_channels, groups).state_dict().items()}
    for key, value in single.state_dict().items():
        got = shapes[key]
        if value.ndim and tuple(got) != (groups * value.shape[0], *value.shape[1:]):
            raise ValueError(f"{type(config).__name__}: {key} has shape {tuple(got)} for {groups} "
                             f"problems, expected {groups} blocks of {tuple(value.shape)} along dim 0")
    packed = build_network(lambda k: config.build(out_channels, k), list(range(groups)))
    code = torch.rand(groups, *config.code_shape(*config.padded_size(16, 16)),
                      generator=torch.Generator().manual_seed(0))
    packed.eval()
    single.eval()
    with torch.no_grad():
        together = packed(code)
        for g in range(groups):
            copy_problem(packed, g, groups, single)
            if not torch.allclose(single(code[g:g + 1]), together[g:g + 1], atol=1e-5):
                raise ValueError(f"{type(config).__name__}: problem {g} of a packed network does not "
                                 "compute what the single network with its weights computes")
