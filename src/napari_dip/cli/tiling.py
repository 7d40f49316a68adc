"""``--max-memory`` and ``--tile-size``: large slices fitted as overlapping tiles within a budget."""
from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import replace

from ..core.memory import parse_bytes


def add_tiling_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("large images")
    g.add_argument("--max-memory", type=_size, metavar="SIZE",
                   help="memory budget for fitting, e.g. 4GB or 512MB (default: half the free RAM, or 80%% of "
                        "the free GPU memory); slices that do not fit whole are fitted as overlapping tiles "
                        "blended back without seams")
    g.add_argument("--tile-size", type=_side, metavar="N",
                   help="fit every slice as tiles of N x N output pixels (rounded up to a size the network "
                        "accepts) whatever the budget")


def with_tiling(config, args: argparse.Namespace):
    """The config carrying the tiling options (api.run reads them from ``config.extra``); the
    plan of a tiled run is printed (:func:`show_plans`)."""
    options = {k: v for k, v in (("max_memory", args.max_memory), ("tile_size", args.tile_size)) if v is not None}
    show_plans(args)
    return replace(config, extra={**config.extra, **options}) if options else config


def show_plans(args: argparse.Namespace) -> None:
    """Print a tiled run's plan and progress to stderr before and while it fits (logger
    ``napari_dip``), unless ``--quiet``."""
    log = logging.getLogger("napari_dip")
    if not args.quiet and not any(isinstance(h, _Stderr) for h in log.handlers):
        log.addHandler(_Stderr())
        log.setLevel(logging.INFO)


def _size(text: str) -> int:
    try:
        return parse_bytes(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _side(text: str) -> int:
    if not text.isdigit() or int(text) < 32:
        raise argparse.ArgumentTypeError(f"expected a tile side of at least 32 pixels, got {text!r}")
    return int(text)


class _Stderr(logging.Handler):
    """Messages as 'napari-dip: ...' lines on the current sys.stderr."""

    def emit(self, record: logging.LogRecord) -> None:
        print(f"napari-dip: {record.getMessage()}", file=sys.stderr, flush=True)
