"""Networks: the DIP skip network and shared building blocks."""
from .blocks import count_parameters
from .factory import build_network
from .skip import SkipConfig, SkipNet

__all__ = ["SkipConfig", "SkipNet", "build_network", "count_parameters"]
