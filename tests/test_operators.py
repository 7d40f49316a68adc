"""Forward operators against their mathematical properties."""
import pytest
import torch

from napari_dip.core.operators import Downsample, Identity, Mask, lanczos_kernel


@pytest.mark.parametrize("factor", [2, 3, 4, 8, 32])
def test_lanczos_kernel_is_normalised_symmetric_and_4f_wide(factor):
    k = lanczos_kernel(factor)
    assert k.shape == (4 * factor, 4 * factor)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    torch.testing.assert_close(k, k.flip(0).flip(1))


@pytest.mark.parametrize("factor", [2, 3, 4, 8])
def test_constant_image_stays_constant(factor):
    x = torch.full((2, 3, 8 * factor, 4 * factor), 0.37)
    y = Downsample(factor)(x)
    assert y.shape == (2, 3, 8, 4)
    torch.testing.assert_close(y, torch.full_like(y, 0.37))


def test_downsampling_removes_frequencies_above_nyquist():
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy + xx) % 2).float()[None, None]
    y = Downsample(2)(checker)
    # Plain decimation would give a constant 0 or 1 image; the anti-aliased operator gives ~0.5.
    inner = y[..., 4:-4, 4:-4]
    assert float((inner - 0.5).abs().max()) < 0.02


def test_downsampling_is_linear_and_its_adjoint_is_exact():
    op = Downsample(3)
    op.kernel = op.kernel.double()
    x1, x2 = torch.rand(2, 1, 2, 24, 30, dtype=torch.float64)
    torch.testing.assert_close(op(2 * x1 - 3 * x2), 2 * op(x1) - 3 * op(x2))
    y = torch.rand(1, 2, 8, 10, dtype=torch.float64)
    assert float((op(x1) * y).sum()) == pytest.approx(float((x1 * op.adjoint(y)).sum()), rel=1e-10)


@pytest.mark.parametrize("factor", [1, 33, 2.5, "4"])
def test_bad_factors_are_rejected(factor):
    with pytest.raises(ValueError, match="factor must be an integer from 2 to 32"):
        Downsample(factor)


def test_size_not_a_multiple_of_the_factor_is_rejected():
    with pytest.raises(ValueError, match="not a multiple of the factor 4"):
        Downsample(4)(torch.rand(1, 1, 30, 32))


def test_mask_keeps_known_pixels_and_zeroes_missing_ones():
    x = torch.rand(1, 3, 5, 6)
    m = torch.zeros(1, 1, 5, 6)
    m[..., :2, :] = 1
    y = Mask(m)(x)
    torch.testing.assert_close(y[..., :2, :], x[..., :2, :])
    assert float(y[..., 2:, :].abs().max()) == 0.0
    assert Mask(m).output_size(5, 6) == (5, 6)
    with pytest.raises(ValueError, match="mask is"):
        Mask(m).output_size(6, 6)


def test_identity_is_identity():
    x = torch.rand(2, 1, 4, 4)
    assert Identity()(x) is x
