"""Forward operators A: the model of how a restored image x became the observation y = A(x).

An operator is any object with

- ``name``: the key it is registered under in :data:`OPERATORS`;
- ``__call__(x) -> y``: x is a batch (G, C, H, W) of G independent problems' images, y
  their observations (G, C, h, w); it must be differentiable in x (the fit back-propagates
  through it) and act on each problem's row alone;
- ``output_size(H, W) -> (h, w)``: the observation's size for an image size, raising a
  ValueError naming the problem when the operator cannot take that size;
- ``scale``: how many image pixels one observation pixel spans along Y and X (1 unless
  the operator changes the size: the super-resolution factor);
- optionally ``adjoint(y) -> x``, the exact adjoint A^T of a linear operator;
- ``rows(index)`` and ``to(device)``, as :class:`~napari_dip.core.slots.PerProblem` gives
  them: per-problem data (a mask or a PSF per slice) lives in (G, ...) tensors named in
  ``per_problem``, or (1, ...) tensors shared by every problem, and is row-selected with
  the problems when a fit splits or shrinks a batch.

A plain callable on (G, C, H, W) tensors works as an operator too (see
:func:`napari_dip.restore`); it is treated as holding nothing per problem.

Register a new operator with ``OPERATORS.register("name", Factory)``; build one with
:func:`make_operator`.
"""
from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import torch
import torch.nn.functional as F

from .slots import PerProblem, Registry

MIN_FACTOR, MAX_FACTOR = 2, 32
BOUNDARIES = ("reflect", "zero", "circular")


@runtime_checkable
class Operator(Protocol):
    """The operator protocol (see the module docstring; ``adjoint`` is optional)."""

    name: str
    scale: int

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...

    def output_size(self, height: int, width: int) -> tuple[int, int]: ...

    def rows(self, index: torch.Tensor) -> "Operator": ...

    def to(self, device: torch.device | str) -> "Operator": ...


OPERATORS: Registry[Operator] = Registry("operator")


def make_operator(name: str, **params) -> Operator:
    """The operator registered as ``name``, built with ``params``."""
    return OPERATORS.make(name, **params)


def _vjp_adjoint(op, y: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A^T y of a linear operator, exactly: the vector-Jacobian product at x = 0."""
    x = torch.zeros(*y.shape[:2], height, width, dtype=y.dtype, device=y.device)
    return torch.autograd.functional.vjp(op, x, y)[1]


@OPERATORS.register("identity")
class Identity(PerProblem):
    """A = I (denoising, Deep Decoder fitting)."""

    name = "identity"
    scale = 1

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x

    adjoint = __call__

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        return height, width


def lanczos_kernel(factor: int, support: int = 2) -> torch.Tensor:
    """The separable Lanczos-``support`` kernel of DIP's downsampler (phase 1/2), 4*factor taps.

    Returns a normalised 2D kernel of shape (4*factor, 4*factor).
    """
    size = 2 * support * factor
    centre = (size + 1) / 2 + 0.5  # the half-pixel phase of the paper's kernel
    d = torch.abs(torch.arange(1, size + 1, dtype=torch.float64) + 0.5 - centre) / factor
    taps = torch.where(d == 0, torch.ones_like(d),
                       support * torch.sin(math.pi * d) * torch.sin(math.pi * d / support)
                       / (math.pi ** 2 * d ** 2).clamp_min(1e-30))
    taps = taps * (d < support)
    kernel = torch.outer(taps, taps)
    return (kernel / kernel.sum()).float()


@OPERATORS.register("downsample")
class Downsample(PerProblem):
    """Anti-aliased downsampling by an integer factor with a Lanczos2 kernel.

    The input is padded by replication so that (H, W) maps to (H / f, W / f) exactly; a
    constant image stays constant.
    """

    name = "downsample"

    def __init__(self, factor: int, device: torch.device | str = "cpu"):
        if not isinstance(factor, int) or not MIN_FACTOR <= factor <= MAX_FACTOR:
            raise ValueError(f"factor must be an integer from {MIN_FACTOR} to {MAX_FACTOR}, "
                             f"got {factor!r}")
        self.scale = factor
        self.kernel = lanczos_kernel(factor).to(device)
        k = self.kernel.shape[-1]
        lo = (k - factor) // 2
        self.padding = (lo, k - factor - lo, lo, k - factor - lo)

    def to(self, device: torch.device | str) -> "Downsample":
        self.kernel = self.kernel.to(device)
        return self

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if height % self.scale or width % self.scale:
            raise ValueError(f"image size {height}x{width} is not a multiple of the factor "
                             f"{self.scale}")
        return height // self.scale, width // self.scale

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.output_size(*x.shape[-2:])
        g, c, h, w = x.shape
        flat = F.pad(x.reshape(g * c, 1, h, w), self.padding, mode="replicate")
        y = F.conv2d(flat, self.kernel.to(x.dtype)[None, None], stride=self.scale)
        return y.reshape(g, c, h // self.scale, w // self.scale)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The exact adjoint A^T y."""
        return _vjp_adjoint(self, y, y.shape[-2] * self.scale, y.shape[-1] * self.scale)


@OPERATORS.register("mask")
class Mask(PerProblem):
    """A = multiplication by a binary mask (1 = observed, 0 = missing), for inpainting.

    ``mask`` is (G, C or 1, H, W), one per problem, or (1, C or 1, H, W) shared by all;
    values above 0.5 count as observed.
    """

    name = "mask"
    scale = 1
    per_problem = ("mask",)

    def __init__(self, mask: torch.Tensor):
        if mask.ndim != 4:
            raise ValueError(f"mask must have shape (G, C or 1, H, W), got {tuple(mask.shape)}")
        self.mask = (mask > 0.5).to(torch.float32)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if (height, width) != tuple(self.mask.shape[-2:]):
            raise ValueError(f"mask is {tuple(self.mask.shape[-2:])} but the image is "
                             f"{(height, width)}")
        return height, width

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mask.to(x.dtype)

    adjoint = __call__


def gaussian_psf(sigma: float, size: int | None = None) -> torch.Tensor:
    """A normalised 2D Gaussian point spread function of standard deviation ``sigma`` pixels,
    (size, size) with ``size`` odd (default: 2 ceil(3 sigma) + 1, 99.7% of the mass per axis)."""
    if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not 0 < sigma <= 50:
        raise ValueError(f"the PSF's sigma must be a number of pixels in (0, 50], got {sigma!r}")
    size = 2 * math.ceil(3 * sigma) + 1 if size is None else size
    if not isinstance(size, int) or size < 1 or size % 2 == 0:
        raise ValueError(f"the PSF size must be an odd positive integer, got {size!r}")
    t = torch.arange(size, dtype=torch.float64) - size // 2
    taps = torch.exp(-t ** 2 / (2 * sigma ** 2))
    psf = torch.outer(taps, taps)
    return (psf / psf.sum()).float()


@OPERATORS.register("convolve")
class Convolve(PerProblem):
    """A = convolution with a point spread function, for deconvolution: y = psf * x.

    ``psf`` is (kh, kw), shared by every problem and channel, or (G, 1, kh, kw) with one
    per problem; it is normalised to sum 1 (``normalise=False`` keeps it as given). Its
    centre is pixel (kh // 2, kw // 2), as for ``scipy.ndimage.convolve``: a PSF that is 1 at
    its centre and 0 elsewhere is the identity. The observation has the image's size; the
    image is extended beyond its edges by ``boundary``:

    - ``reflect``: mirrored without repeating the edge pixel (numpy's ``reflect``), the
      default: real images continue past their edges, and with a normalised PSF a constant
      image stays constant;
    - ``zero``: zeros (the observation darkens towards its edges);
    - ``circular``: wrapped around (the periodic model of FFT deconvolution).

    With the ``reflect`` and ``circular`` boundaries the PSF can be at most
    (2H - 1) x (2W - 1) for an H x W image (``output_size`` says so). ``adjoint`` is exact
    for every boundary (the vector-Jacobian product of the linear map, padding included).
    """

    name = "convolve"
    scale = 1
    per_problem = ("psf",)

    def __init__(self, psf, *, boundary: str = "reflect", normalise: bool = True):
        psf = torch.as_tensor(psf)
        if psf.dtype.is_complex or not (psf.dtype.is_floating_point or psf.dtype in (torch.uint8, torch.int16,
                                                                                    torch.int32, torch.int64)):
            raise ValueError(f"the PSF must be a real numeric array, got dtype {psf.dtype}")
        psf = psf.to(torch.float32)
        if psf.ndim == 2:
            psf = psf[None, None]
        if psf.ndim != 4 or psf.shape[1] != 1:
            raise ValueError(f"the PSF must be a 2D array (kh, kw) or (G, 1, kh, kw), got shape {tuple(psf.shape)}")
        if not torch.isfinite(psf).all():
            raise ValueError("the PSF contains NaN or infinite values")
        total = psf.sum(dim=(-2, -1), keepdim=True)
        if normalise:
            if not bool((total > 0).all()):
                raise ValueError("the PSF must have a positive sum (it is normalised to sum 1)")
            psf = psf / total
        if boundary not in BOUNDARIES:
            raise ValueError(f"unknown PSF boundary {boundary!r}; choose one of {', '.join(BOUNDARIES)}")
        self.psf = psf
        self.boundary = boundary

    @property
    def padding(self) -> tuple[int, int, int, int]:
        """(left, right, top, bottom) extension that centres the PSF on pixel (kh//2, kw//2)."""
        kh, kw = self.psf.shape[-2:]
        top, left = kh - 1 - kh // 2, kw - 1 - kw // 2
        return left, kw - 1 - left, top, kh - 1 - top

    @property
    def halo(self) -> int:
        """How far (pixels) an observed pixel depends on the image: the PSF's radius. Tiles of
        a large image overlap by more than this (:mod:`napari_dip.tiled`)."""
        kh, kw = self.psf.shape[-2:]
        return int(max(kh, kw) // 2)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        kh, kw = self.psf.shape[-2:]
        if self.boundary != "zero" and (kh // 2 >= height or kw // 2 >= width):
            raise ValueError(f"the PSF ({kh}x{kw}) is too large for a {height}x{width} image; "
                             f"crop the PSF to at most {2 * height - 1}x{2 * width - 1} pixels")
        return height, width

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        self.output_size(*x.shape[-2:])
        g, c, h, w = x.shape
        mode = {"reflect": "reflect", "zero": "constant", "circular": "circular"}[self.boundary]
        kernel = self.psf.flip(-2, -1).to(x.dtype)  # conv2d correlates: flipped, it convolves
        if kernel.shape[0] == 1:  # one PSF for all: every channel of every problem a batch item
            padded = F.pad(x.reshape(g * c, 1, h, w), self.padding, mode=mode)
            return F.conv2d(padded, kernel).reshape(g, c, h, w)
        # one PSF per problem: a grouped convolution, each problem's PSF for its channels
        padded = F.pad(x.reshape(1, g * c, h, w), self.padding, mode=mode)
        return F.conv2d(padded, kernel.repeat_interleave(c, dim=0), groups=g * c).reshape(g, c, h, w)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """The exact adjoint A^T y (correlation with the PSF, the boundary folded back)."""
        return _vjp_adjoint(self, y, *y.shape[-2:])


class Cropped:
    """A(x[..., :height, :width]): an operator applied to the top-left part of a larger image.

    Networks produce sizes that are multiples of their ``size_multiple``; a task that crops
    (deconvolution, user operators) fits the network's larger output through this, so the
    observation is fitted as it is, with no padding invented for it.
    """

    def __init__(self, inner, height: int, width: int):
        self.inner, self.height, self.width = inner, height, width
        self.name = f"cropped {getattr(inner, 'name', type(inner).__name__)}"
        self.scale = getattr(inner, "scale", 1)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x[..., :self.height, :self.width])

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if height < self.height or width < self.width:
            raise ValueError(f"the image ({height}x{width}) is smaller than the crop "
                             f"({self.height}x{self.width})")
        return self.inner.output_size(self.height, self.width)

    def rows(self, index: torch.Tensor) -> "Cropped":
        inner = self.inner.rows(index) if hasattr(self.inner, "rows") else self.inner
        return self if inner is self.inner else Cropped(inner, self.height, self.width)

    def to(self, device: torch.device | str) -> "Cropped":
        if hasattr(self.inner, "to"):
            moved = self.inner.to(device)
            # a torch.nn.Module's to() moves in place; anything else may return a new object
            self.inner = moved if moved is not None else self.inner
        return self
