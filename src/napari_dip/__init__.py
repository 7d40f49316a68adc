"""napari-dip: restore images with untrained neural network priors."""
__version__ = "0.1.0"


def __getattr__(name):
    # The public functions import torch lazily, so napari starts fast.
    if name in ("denoise", "super_resolve", "inpaint", "deconvolve", "restore"):
        from . import api
        return getattr(api, name)
    if name == "estimate_cost":
        from .estimate import estimate_cost
        return estimate_cost
    if name == "fit_decoder":
        from .decoder import fit_decoder
        return fit_decoder
    raise AttributeError(f"module 'napari_dip' has no attribute {name!r}")


__all__ = ["denoise", "super_resolve", "inpaint", "deconvolve", "restore", "fit_decoder", "estimate_cost",
           "__version__"]
