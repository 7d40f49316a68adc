"""Estimating a noise model from one noisy image (after Foi et al. 2008).

Local (mean, variance) pairs are measured on smooth parts of the image and a model
``var(x) = a * x + b`` is fitted to them robustly:

1. Every 2 x 2 window gives an approximation (its mean) and three Haar details. The diagonal
   detail ``(z00 - z01 - z10 + z11) / 2`` has the noise variance and cancels any locally
   linear signal; the horizontal and vertical details do not cancel edges.
2. Windows where the horizontal and vertical detail energy (averaged over 9 x 9 windows) is
   more than twice the variance a first fit expects at their level sit on edges or texture
   and are dropped; so are windows next to the image's clipped minimum or maximum.
3. The rest are sorted by a smoothed approximation (level sets of the mean) into bins of equal
   count; each bin gives its mean and a robust variance of its diagonal details (a sample
   variance within 3.5 normalised median absolute deviations, corrected for the cut tails).
4. ``a`` and ``b`` come from iteratively reweighted least squares (weights ``n / var**2``,
   the inverse variance of a variance estimate) with Huber weights on the residuals.

``auto`` fits Gaussian (``a = 0``), Poisson (``b = 0``), Poisson-Gaussian and Rician models
to the same pairs and keeps the one with the lowest Bayesian information criterion, the
residuals scaled by the Poisson-Gaussian fit's dispersion (neighbouring windows overlap, so
the variance estimates are noisier than independent samples would make them). A
signal-dependent model it keeps only if its variance grows at least twofold from the darkest
to the brightest level: Gaussian noise on an image clipped to its range (values below 0 set
to 0) has a smaller variance near the clipped ends, which fits a mild slope (1.1-1.5x on the
harness's synthetic crops), and on few levels (small images) the Bayesian criterion cannot
tell; real shot noise changes the variance many times over (fluorescence pairs: from near 0
to thousands, in 8-bit units). Rician is fitted
on request only (``model="rician"``, for MRI magnitude images): Poisson-Gaussian data clipped
at zero (dark fluorescence backgrounds) has the same rising-then-flat variance curve, and on
the FMD confocal image the Rician curve fitted better although the noise is shot noise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, optimize, special

from .noise import NOISE_CHOICES, NoiseModel, rician_moments

MAD_SCALE = 1.4826  # MAD of a standard normal sample is 1 / 1.4826
MIN_PER_BIN = 800
MAX_BINS = 40
EDGE_RATIO = 2.0
HUBER = 2.0
TRIM = 3.5
MIN_VARIANCE_RATIO = 2.0  # auto: a signal-dependent model must change the variance this much
TRIM_KEEP = float(1 - 2 * TRIM * np.exp(-TRIM ** 2 / 2) / np.sqrt(2 * np.pi) / special.erf(TRIM / np.sqrt(2)))


@dataclass
class NoiseEstimate:
    """The chosen model, the level-set statistics it was fitted to and each model's score."""

    model: NoiseModel
    means: np.ndarray
    variances: np.ndarray
    counts: np.ndarray
    scores: dict = field(default_factory=dict)  # kind -> BIC (lower is better)

    def as_dict(self) -> dict:
        return {**self.model.as_dict(), "bic": {k: round(v, 2) for k, v in self.scores.items()},
                "levels": len(self.means)}


def local_statistics(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(means, variances, counts) of the level sets of a 2D image's smooth blocks."""
    z = np.asarray(image, dtype=np.float64)
    if z.ndim != 2 or min(z.shape) < 16:
        raise ValueError(f"noise estimation needs a 2D image of at least 16 x 16 pixels, got shape {z.shape}")
    z00, z01, z10, z11 = z[:-1, :-1], z[:-1, 1:], z[1:, :-1], z[1:, 1:]  # every 2 x 2 window
    approx = (z00 + z01 + z10 + z11) / 4
    diag = (z00 - z01 - z10 + z11) / 2
    edge = ndimage.uniform_filter(((z00 + z01 - z10 - z11) ** 2 + (z00 - z01 + z10 - z11) ** 2) / 8,
                                  9, mode="reflect")
    level = ndimage.uniform_filter(approx, 5, mode="reflect")
    lo, hi = z.min(), z.max()
    touches = ((z00 == lo) | (z01 == lo) | (z10 == lo) | (z11 == lo)
               | (z00 == hi) | (z01 == hi) | (z10 == hi) | (z11 == hi))
    # Clipped blocks have a smaller variance than the model's; drop them and their neighbours.
    keep = ~ndimage.maximum_filter(touches, 3) if touches.mean() > 0.001 else np.ones_like(touches)
    if keep.sum() < 2 * MIN_PER_BIN:
        keep = np.ones_like(keep)
    # Pass 1 on every block (the median is robust to a minority of edges) gives the variance
    # expected at each level; pass 2 drops blocks whose edge energy exceeds it. Comparing with
    # the block's own diagonal energy instead would keep noisier blocks and bias the variance.
    first = _levels(level[keep], approx[keep], diag[keep])
    a, b = _wls(*first, "ab")
    expected = np.maximum(a * level + b, 1e-12 * max(first[1].max(), 1e-12))
    smooth = keep & (edge <= EDGE_RATIO * expected)
    return _levels(level[smooth], approx[smooth], diag[smooth]) if smooth.sum() >= 2 * MIN_PER_BIN else first


def _levels(level: np.ndarray, approx: np.ndarray, diag: np.ndarray):
    """Blocks sorted by level into bins of equal count: mean, MAD variance, count per bin."""
    order = np.argsort(level, kind="stable")
    a_k, d_k = approx[order], diag[order]
    bins = int(np.clip(len(order) // MIN_PER_BIN, 1, MAX_BINS))
    means, variances, counts = [], [], []
    for part in np.array_split(np.arange(len(order)), bins):
        d = d_k[part]
        # A sample variance (efficient) of the details within TRIM robust deviations
        # (edges the mask missed), rescaled for the Gaussian tails the trimming cuts.
        mad = MAD_SCALE * np.median(np.abs(d - np.median(d)))
        d = d[np.abs(d - np.median(d)) <= TRIM * mad] if mad > 0 else d
        means.append(a_k[part].mean())
        variances.append(float(np.mean((d - d.mean()) ** 2)) / TRIM_KEEP)
        counts.append(len(part))
    return np.array(means), np.array(variances), np.array(counts, dtype=float)


def _wls(x: np.ndarray, v: np.ndarray, n: np.ndarray, basis: str) -> tuple[float, float]:
    """IRLS fit of v = a x + b (``basis``: 'ab', 'a' with b = 0, 'b' with a = 0), Huber-weighted."""
    cols = {"ab": [x, np.ones_like(x)], "a": [x], "b": [np.ones_like(x)]}[basis]
    design = np.stack(cols, 1)
    pred = np.maximum(v, 1e-12)
    coef = np.zeros(len(cols))
    for _ in range(20):
        w = n / np.maximum(pred, 1e-12) ** 2
        r = (v - pred) * np.sqrt(w / 2)
        w = w * np.minimum(1.0, HUBER / np.maximum(np.abs(r), 1e-12))
        sw = np.sqrt(w)
        coef, *_ = np.linalg.lstsq(design * sw[:, None], v * sw, rcond=None)
        new = np.maximum(design @ coef, 1e-12 * max(v.max(), 1e-12))
        if np.allclose(new, pred, rtol=1e-6):
            break
        pred = new
    if basis == "ab":
        return float(coef[0]), float(coef[1])
    return (float(coef[0]), 0.0) if basis == "a" else (0.0, float(coef[0]))


def _rician_curve(means: np.ndarray, sigma: float) -> np.ndarray:
    """Variance of a Rician magnitude whose mean is ``means`` (means below sigma*sqrt(pi/2): background)."""
    nus = sigma * np.concatenate([[0], np.geomspace(1e-3, 60, 400)])
    m, var = rician_moments(nus, sigma)
    return np.interp(means, m, var, left=var[0], right=sigma ** 2)


def _fit_rician(x, v, n) -> tuple[float, float]:
    """(sigma^2, weighted squared residual) of the best Rician curve."""
    w = n / np.maximum(v, 1e-12) ** 2
    s0 = np.sqrt(np.median(v))
    cost = lambda s: float(np.sum(w * (v - _rician_curve(x, s)) ** 2))  # noqa: E731
    best = optimize.minimize_scalar(cost, bounds=(0.2 * s0, 5 * s0), method="bounded")
    return float(best.x) ** 2, float(best.fun)


def _variance_ratio(a: float, b: float, means: np.ndarray) -> float:
    """How many times larger the fitted variance is at the brightest level than at the darkest."""
    low = a * means.min() + b
    return float((a * means.max() + b) / low) if low > 0 else float("inf")


def estimate_noise(image: np.ndarray, model: str = "auto") -> NoiseEstimate:
    """Estimate ``model`` (or, with ``auto``, choose one) from one noisy 2D image in its own units."""
    if model not in NOISE_CHOICES:
        raise ValueError(f"unknown noise model {model!r}; choose one of {', '.join(NOISE_CHOICES)}")
    x, v, n = local_statistics(image)
    weights = n / np.maximum(v, 1e-12) ** 2
    k = len(x)
    fits: dict[str, tuple[float, float]] = {}
    residuals: dict[str, tuple[float, int]] = {}
    for kind, basis in (("gaussian", "b"), ("poisson", "a"), ("poisson-gaussian", "ab")):
        a, b = _wls(x, v, n, basis)
        if kind != "gaussian" and a <= 0:
            continue  # no signal-dependent part in this image
        fits[kind] = (a, b)
        residuals[kind] = (float(np.sum(weights * (v - (a * x + b)) ** 2)), len(basis))
    if model == "rician":
        if float(np.min(image)) < 0:
            raise ValueError("Rician noise is for magnitude images; this image has negative values")
        s2, rss = _fit_rician(x, v, n)
        fits["rician"], residuals["rician"] = (0.0, s2), (rss, 1)
    flexible = residuals.get("poisson-gaussian", residuals["gaussian"])
    dispersion = max(flexible[0] / max(k - flexible[1], 1), 1e-12)
    scores = {kind: rss / dispersion + p * np.log(max(k, 2)) for kind, (rss, p) in residuals.items()}
    if model == "auto":
        kind = min(scores, key=scores.get)
        if kind != "gaussian" and _variance_ratio(*fits[kind], x) < MIN_VARIANCE_RATIO:
            kind = "gaussian"  # a mild slope: clipped Gaussian noise looks like this (see the top)
    elif model in fits:
        kind = model
    else:  # a Poisson model asked for where the fit finds no signal-dependent variance
        kind = model
        fits[kind] = (max(_wls(x, v, n, "a")[0], 1e-12), 0.0) if model == "poisson" else \
            (1e-12, max(_wls(x, v, n, "b")[1], 1e-12))
    a, b = fits[kind]
    if kind in ("gaussian", "rician"):
        a = 0.0
    return NoiseEstimate(NoiseModel(kind, a, b), x, v, n, {k_: float(v_) for k_, v_ in scores.items()})


