"""Seeded construction of G independent networks packed into one grouped network."""
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


def copy_problem(source: nn.Module, index: int, groups: int, target: nn.Module) -> nn.Module:
    """Load problem ``index`` of ``source`` (a packed network of ``groups`` problems) into
    every problem of ``target`` (the same architecture packing any number of problems)."""
    new = target.state_dict()
    for key, value in source.state_dict().items():
        if value.ndim == 0:
            new[key] = value
        else:
            one = value.unflatten(0, (groups, -1))[index]
            copies = new[key].shape[0] // one.shape[0]
            new[key] = one.repeat(copies, *([1] * (one.ndim - 1)))
    target.load_state_dict(new)
    return target
