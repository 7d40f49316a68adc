"""Seeded construction of G independent networks packed into one grouped network, and
moving problems between packed networks; both rely on the packing rule of the network slot
(:mod:`napari_dip.core.networks`: problem g owns the g-th block of dim 0 of every state tensor
that has a dimension; 0-d tensors are shared)."""
from __future__ import annotations

import threading
from typing import Callable, Sequence

import torch
from torch import nn

# Layers initialise from torch's global generator; the lock keeps fits started in several
# threads of one process (napari workers, Dask threads) from interleaving their seeding.
_SEEDING = threading.Lock()


def build_network(make: Callable[[int], nn.Module], seeds: Sequence[int]) -> nn.Module:
    """Build ``make(groups)`` holding one independently initialised network per seed.

    Each problem's weights are exactly those that ``make(1)`` gets under
    ``torch.manual_seed(seed)``, so a batched fit starts where the sequential fits start.
    The global RNG state is left untouched; construction is thread-safe.
    """
    with _SEEDING, torch.random.fork_rng(devices=[]):
        singles = []
        for seed in seeds:
            torch.manual_seed(seed)
            singles.append(make(1))
        if len(seeds) == 1:
            return singles[0]
        packed = make(len(seeds))
    states = [s.state_dict() for s in singles]
    merged = {k: (v if v.ndim == 0 else torch.cat([s[k] for s in states], dim=0))
              for k, v in states[0].items()}
    packed.load_state_dict(merged)
    return packed


def move_problems(source: nn.Module, source_groups: int, target: nn.Module,
                  pairs: Sequence[tuple[int, int]]) -> nn.Module:
    """For each (s, t) in ``pairs`` load problem s of ``source`` (a packed network of
    ``source_groups`` problems) into problem t of ``target`` (the same architecture packing
    any number of problems); the target's other problems keep their weights."""
    new = target.state_dict()
    src_rows, dst_rows = [s for s, _ in pairs], [t for _, t in pairs]
    for key, value in source.state_dict().items():
        if value.ndim == 0:
            new[key] = value
            continue
        src = value.unflatten(0, (source_groups, -1))
        dst = new[key].clone().unflatten(0, (-1, src.shape[1]))
        dst[dst_rows] = src[src_rows].to(dst.device)
        new[key] = dst.flatten(0, 1)
    target.load_state_dict(new)
    return target


def copy_problem(source: nn.Module, index: int, groups: int, target: nn.Module) -> nn.Module:
    """Load problem ``index`` of ``source`` (a packed network of ``groups`` problems) into
    every problem of ``target`` (the same architecture packing any number of problems)."""
    key, weight = next((k, v) for k, v in source.state_dict().items() if v.ndim)
    copies = target.state_dict()[key].shape[0] * groups // weight.shape[0]
    return move_problems(source, groups, target, [(index, t) for t in range(copies)])
