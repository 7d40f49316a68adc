"""Codes for the networks: DIP uniform, [0, 1] uniform, blurred, Perlin, 3D, patch-grid coherence."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from napari_dip.core.inputs import CODES, gaussian_blur3, make_code, perlin
from napari_dip.core.tiling import TileGrid
from napari_dip.decoder import code_kind, spanning_code


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_dip_uniform_and_meshgrid_are_unchanged():
    u = make_code("uniform", 3, 16, 16, generator=gen())
    assert u.shape == (3, 16, 16) and 0 <= u.min() and u.max() < 0.1 and u.max() > 0.09
    m = make_code("meshgrid", 7, 4, 5, generator=gen())
    assert m.shape == (2, 4, 5) and m[0, 0, -1] == 1 and m[1, -1, 0] == 1


def test_uniform01_spans_zero_to_one():
    u = make_code("uniform01", 4, 32, 32, generator=gen())
    assert 0 <= u.min() < 0.01 and 0.99 < u.max() < 1 and abs(float(u.mean()) - 0.5) < 0.02


def test_blur_uses_the_3x3_sigma_08_kernel():
    impulse = torch.zeros(1, 5, 5)
    impulse[0, 2, 2] = 1
    k = gaussian_blur3(impulse)[0, 1:4, 1:4]
    t = np.exp(-np.array([1.0, 0, 1]) / (2 * 0.8 ** 2))
    t /= t.sum()
    np.testing.assert_allclose(k.numpy(), np.outer(t, t), rtol=1e-6)
    b = make_code("blurred", 2, 32, 32, generator=gen())
    u = make_code("uniform01", 2, 32, 32, generator=gen())
    torch.testing.assert_close(b, gaussian_blur3(u))
    assert float(b.std()) < 0.6 * float(u.std())  # blurring averages neighbours


def neighbour_corr(x: torch.Tensor) -> float:
    a, b = x[..., :, :-1].flatten(), x[..., :, 1:].flatten()
    return float(torch.corrcoef(torch.stack([a, b]))[0, 1])


def test_perlin_range_smoothness_and_feature_size():
    p = perlin((64, 64), 8, generator=gen(), batch=3)
    assert p.shape == (3, 64, 64) and 0 <= p.min() and p.max() <= 1
    assert p[:, ::8, ::8].sub(0.5).abs().max() < 1e-6  # zero at the lattice points
    assert neighbour_corr(p) > 0.9
    assert neighbour_corr(perlin((64, 64), 2, generator=gen())) < neighbour_corr(p)
    assert not torch.allclose(p[0], p[1])  # independent channels


def test_perlin_is_cheap():
    start = time.perf_counter()
    make_code("perlin", 96, 64, 64, generator=gen())
    assert time.perf_counter() - start < 2.0


@pytest.mark.parametrize("kind", ["uniform01-3d", "blurred-3d"])
def test_3d_codes_interpolate_linearly_across_channels(kind):
    z = make_code(kind, 9, 12, 12, generator=gen())
    first, last = z[0], z[-1]
    for c in range(9):
        t = c / 8
        torch.testing.assert_close(z[c], (1 - t) * first + t * last)
    assert not torch.allclose(first, last)


def test_perlin_3d_is_smooth_across_channels():
    z = make_code("perlin-3d", 32, 16, 16, generator=gen(), feature_size=8)
    across = float(torch.corrcoef(torch.stack([z[:-1].flatten(), z[1:].flatten()]))[0, 1])
    assert across > 0.9
    flat = make_code("perlin", 32, 16, 16, generator=gen(), feature_size=8)
    assert abs(float(torch.corrcoef(torch.stack([flat[:-1].flatten(), flat[1:].flatten()]))[0, 1])) < 0.3


def test_every_kind_has_its_shape_and_unknown_kinds_fail():
    for kind in CODES:
        z = make_code(kind, 5, 8, 9, generator=gen())
        assert z.shape == ((2, 8, 9) if kind == "meshgrid" else (5, 8, 9))
    with pytest.raises(ValueError, match="unknown code 'bogus'"):
        make_code("bogus", 1, 4, 4, generator=gen())
    assert code_kind("uniform", False) == "uniform01" and code_kind("perlin", True) == "perlin-3d"
    with pytest.raises(ValueError, match="decoder code"):
        code_kind("meshgrid", False)


@pytest.mark.parametrize("kind", ["blurred", "perlin"])
def test_patch_codes_are_pieces_of_one_coherent_code(kind):
    whole = spanning_code(kind, (4, 12, 15), 7, feature_size=4)
    grid = TileGrid.make((12, 15), (6, 5), 0)  # 2 x 3 abutting patches
    parts = grid.cut(whole)
    assert parts.shape == (6, 4, 6, 5)
    rebuilt = parts.reshape(2, 3, 4, 6, 5).permute(2, 0, 3, 1, 4).reshape(4, 12, 15)
    torch.testing.assert_close(rebuilt, whole)  # the patches put side by side are the whole code
    # across the seam between patch (0, 0) and (0, 1) the code stays correlated
    seam_left, seam_right = parts[0, :, :, -1].flatten(), parts[1, :, :, 0].flatten()
    far = parts[5, :, :, 0].flatten()
    near = float(torch.corrcoef(torch.stack([seam_left, seam_right]))[0, 1])
    assert near > 0.3 and near > abs(float(torch.corrcoef(torch.stack([seam_left, far]))[0, 1]))
