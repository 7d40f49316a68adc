"""The tiling maths: coverage, partition of unity, exact reconstruction, super-resolution geometry."""
import numpy as np
import pytest
import torch

from napari_dip.core.tiling import TileGrid, tile_starts

SHAPES = [(100, 130), (64, 64), (257, 96), (449, 300), (40, 200)]


@pytest.mark.parametrize("length,tile,overlap", [(100, 32, 8), (64, 64, 8), (65, 64, 16), (449, 256, 64),
                                                 (1000, 96, 24), (20, 32, 8)])
def test_starts_cover_the_axis_inside_it_with_the_overlap(length, tile, overlap):
    starts = tile_starts(length, tile, overlap)
    assert starts[0] == 0
    if length >= tile:
        assert starts[-1] + tile == length  # the last tile is shifted inward, not padded
    else:
        assert starts == (0,)
    assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))  # overlaps >= overlap
    assert len(set(starts)) == len(starts)


def test_starts_respect_align():
    starts = tile_starts(512, 128, 32, align=16)
    assert all(s % 16 == 0 for s in starts) and starts[-1] == 384
    with pytest.raises(ValueError, match="multiples of align"):
        tile_starts(500, 128, 32, align=16)
    with pytest.raises(ValueError, match="overlap"):
        tile_starts(500, 32, 32)


@pytest.mark.parametrize("shape", SHAPES)
def test_tiles_cover_and_weights_sum_to_one(shape):
    grid = TileGrid.make(shape, 64, 16)
    covered = np.zeros(grid.covered, int)
    for y, x in grid.boxes():
        covered[y:y + 64, x:x + 64] += 1
    assert covered.min() >= 1
    total = grid.stitch(np.ones((grid.count, 64, 64), np.float32))
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    w = grid.weights()
    assert w.min() >= 0 and w.max() <= 1 + 1e-6
    # Flat in the interior: a tile's centre belongs to it alone.
    assert np.allclose(w[:, 30:34, 30:34], 1.0)


def test_weights_are_smooth_ramps_with_a_margin():
    grid = TileGrid.make((112, 64), 64, 16, margin=4)  # two rows of tiles, overlap 16 at 48..64
    assert grid.starts_y == (0, 48)
    col = grid.weights(0)[:, 10]
    assert np.all(col[:52] == 1) and np.all(col[60:] == 0)  # 4 pixels kept on each side of the overlap
    ramp = col[52:60]
    assert np.all(np.diff(ramp) < 0) and 0 < ramp.min() and ramp.max() < 1


def test_constant_image_stays_constant_and_identity_fit_reproduces_the_input():
    rng = np.random.default_rng(0)
    image = rng.random((2, 300, 220)).astype(np.float32)
    grid = TileGrid.make((300, 220), 96, 24)
    tiles = grid.cut(image)
    assert tiles.shape == (grid.count, 2, 96, 96)
    np.testing.assert_allclose(grid.stitch(tiles), image, atol=1e-6)  # identity "fit"
    const = np.full((1, 300, 220), 0.37, np.float32)
    np.testing.assert_allclose(grid.stitch(grid.cut(const)), 0.37, atol=1e-6)


def test_cut_works_on_tensors_and_checks_the_shape():
    grid = TileGrid.make((100, 100), 64, 16)
    t = torch.arange(100 * 100, dtype=torch.float32).reshape(1, 100, 100)
    tiles = grid.cut(t)
    assert isinstance(tiles, torch.Tensor) and tiles.shape == (4, 1, 64, 64)
    assert torch.equal(tiles[3], t[:, 36:, 36:])
    with pytest.raises(ValueError, match="covers"):
        grid.cut(t[:, :90])


def test_image_smaller_than_a_tile_is_one_padded_tile():
    grid = TileGrid.make((40, 200), 64, 16)
    assert grid.starts_y == (0,) and grid.covered == (64, 200)
    padded = np.pad(np.ones((40, 200), np.float32), ((0, 24), (0, 0)), mode="reflect")
    out = np.zeros((40, 200), np.float32)
    for k in range(grid.count):
        grid.add(out, grid.cut(padded, k), k, crop=(40, 200))
    np.testing.assert_allclose(out, 1.0, atol=1e-6)


@pytest.mark.parametrize("factor", [2, 3])
def test_superres_grid_matches_the_low_res_grid(factor):
    low = TileGrid.make((150, 100), 64, 16)
    high = low.scaled(factor)
    assert high.shape == (150 * factor, 100 * factor) and high.tile == (64 * factor, 64 * factor)
    assert high.boxes() == [(y * factor, x * factor) for y, x in low.boxes()]
    assert high.covered == (low.covered[0] * factor, low.covered[1] * factor)
    np.testing.assert_allclose(high.stitch(np.ones((high.count, 64 * factor, 64 * factor), np.float32)), 1,
                               atol=1e-6)
    # A high-res image cut like the low-res one stitches back exactly.
    x = np.random.default_rng(1).random((150 * factor, 100 * factor)).astype(np.float32)
    np.testing.assert_allclose(high.stitch(high.cut(x)), x, atol=1e-6)


def test_halo_widens_overlap_and_margin():
    grid = TileGrid.make((300, 300), 96, 8, halo=10)
    assert grid.margin >= 10
    assert all(b - a <= 96 - 22 for a, b in zip(grid.starts_y, grid.starts_y[1:]))
    col = grid.weights(0)[:, 5]
    # The 10 pixels of tile 0 nearest its lower border carry no weight (beyond the PSF's reach).
    assert np.all(col[-10:] == 0)


def test_edges_are_inside_the_overlaps():
    grid = TileGrid.make((256, 256), 128, 32)
    ys, xs = grid.edges()
    assert len(ys) == grid.rows - 1 and len(xs) == grid.cols - 1
    for k, e in enumerate(ys):
        assert grid.starts_y[k + 1] <= e < grid.starts_y[k] + 128
