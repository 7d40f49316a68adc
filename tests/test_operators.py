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


# --- the operator slot: registry, per-problem rows, convolution with a PSF --------------------

import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from napari_dip.core.operators import OPERATORS, Convolve, Operator, gaussian_psf, make_operator  # noqa: E402

SCIPY_MODE = {"reflect": "mirror", "zero": "constant", "circular": "wrap"}


def test_the_registry_builds_every_operator_and_names_the_choices():
    assert set(OPERATORS) >= {"identity", "downsample", "mask", "convolve"}
    assert make_operator("downsample", factor=2).output_size(8, 6) == (4, 3)
    for op in (Identity(), Downsample(2), Mask(torch.ones(1, 1, 4, 4)), Convolve(torch.ones(3, 3))):
        assert isinstance(op, Operator) and OPERATORS.get(op.name) is type(op)
    with pytest.raises(ValueError, match="unknown operator 'blur'; choose one of identity"):
        make_operator("blur")


@pytest.mark.parametrize("boundary", ["reflect", "zero", "circular"])
@pytest.mark.parametrize("psf_shape", [(5, 5), (4, 3)])
def test_convolution_matches_scipy_with_the_documented_centre_and_boundary(boundary, psf_shape):
    rng = np.random.default_rng(0)
    x = rng.random((2, 3, 12, 10))
    psf = rng.random(psf_shape)
    y = Convolve(torch.from_numpy(psf), boundary=boundary)(torch.from_numpy(x).float()).numpy()
    expected = np.stack([[ndimage.convolve(ch, psf / psf.sum(), mode=SCIPY_MODE[boundary]) for ch in im]
                         for im in x])
    assert y.shape == x.shape
    np.testing.assert_allclose(y, expected, atol=1e-5)


@pytest.mark.parametrize("boundary", ["reflect", "zero", "circular"])
def test_convolution_is_linear_and_its_adjoint_is_exact(boundary):
    g = torch.Generator().manual_seed(1)
    psf = torch.rand(2, 1, 5, 3, generator=g, dtype=torch.float64)  # one PSF per problem
    op = Convolve(psf, boundary=boundary)
    op.psf = op.psf.double()
    x1, x2 = torch.rand(2, 2, 3, 9, 11, generator=g, dtype=torch.float64)
    torch.testing.assert_close(op(2 * x1 - 3 * x2), 2 * op(x1) - 3 * op(x2))
    y = torch.rand(2, 3, 9, 11, generator=g, dtype=torch.float64)
    assert float((op(x1) * y).sum()) == pytest.approx(float((x1 * op.adjoint(y)).sum()), rel=1e-10)


@pytest.mark.parametrize("op", [Identity(), Mask((torch.rand(2, 1, 6, 6) > 0.5).float())])
def test_identity_and_mask_are_self_adjoint(op):
    x, y = torch.rand(2, 2, 3, 6, 6, dtype=torch.float64)
    assert float((op(x) * y).sum()) == pytest.approx(float((x * op.adjoint(y)).sum()), rel=1e-10)


@pytest.mark.parametrize("boundary", ["reflect", "circular"])
def test_a_constant_image_stays_constant_under_a_normalised_psf(boundary):
    x = torch.full((1, 2, 16, 12), 0.42)
    y = Convolve(gaussian_psf(2.0), boundary=boundary)(x)
    torch.testing.assert_close(y, x)


def test_a_delta_psf_is_the_identity_and_the_blur_spreads_a_point_by_the_psf():
    x = torch.rand(1, 1, 9, 9)
    delta = torch.zeros(3, 3)
    delta[1, 1] = 1
    torch.testing.assert_close(Convolve(delta)(x), x)
    point = torch.zeros(1, 1, 15, 15)
    point[..., 7, 7] = 1
    psf = gaussian_psf(1.5)
    k = psf.shape[-1] // 2
    torch.testing.assert_close(Convolve(psf)(point)[0, 0, 7 - k:8 + k, 7 - k:8 + k], psf)


def test_gaussian_psf_is_normalised_with_the_asked_spread():
    psf = gaussian_psf(2.0)
    assert psf.shape == (13, 13) and float(psf.sum()) == pytest.approx(1.0, abs=1e-6)
    t = torch.arange(13.0) - 6
    # variance sigma^2, less the tails beyond 3 sigma (1.2%)
    assert float((psf.sum(0) * t ** 2).sum()) == pytest.approx(4.0 * 0.988, rel=2e-3)
    for bad in (0, -1, "2", float("nan")):
        with pytest.raises(ValueError, match="sigma"):
            gaussian_psf(bad)


@pytest.mark.parametrize("psf, match", [
    (torch.ones(3), "2D array"), (torch.full((3, 3), float("nan")), "NaN"),
    (torch.zeros(3, 3), "positive sum"), (torch.ones(3, 3, dtype=torch.complex64), "real numeric"),
])
def test_bad_psfs_are_refused(psf, match):
    with pytest.raises(ValueError, match=match):
        Convolve(psf)


def test_a_psf_larger_than_the_image_allows_is_refused_with_the_size():
    with pytest.raises(ValueError, match="too large for a 8x8 image"):
        Convolve(torch.ones(17, 17)).output_size(8, 8)
    with pytest.raises(ValueError, match="unknown PSF boundary"):
        Convolve(torch.ones(3, 3), boundary="nearest")


def test_per_problem_data_follows_the_problems_and_shared_data_stays_shared():
    psfs = torch.stack([gaussian_psf(s, 7) for s in (0.5, 1.0, 2.0)])[:, None]
    op = Convolve(psfs)
    two = op.rows(torch.tensor([2, 0]))
    torch.testing.assert_close(two.psf, op.psf[[2, 0]])
    x = torch.rand(3, 1, 10, 10)
    torch.testing.assert_close(two(x[[2, 0]]), op(x)[[2, 0]])
    shared = Convolve(gaussian_psf(1.0))
    assert shared.rows(torch.tensor([1])) is shared
