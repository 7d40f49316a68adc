"""The ``napari-dip`` command: one subcommand module per job, registered here."""
from __future__ import annotations

import argparse
import sys

from . import baseline, decoder, deconvolve, restore, sweep

#: Modules that add subcommands; each has ``register(subparsers)`` and sets ``func``.
COMMANDS = [restore, deconvolve, decoder, sweep, baseline]


class UserError(Exception):
    """A mistake in the command line or the input files: one line on stderr, no traceback."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-dip",
        description="Restore images with untrained neural network priors (Deep Image Prior, Deep Decoder).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in COMMANDS:
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("napari-dip: interrupted; finished outputs were kept", file=sys.stderr)
        return 130
    except (UserError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as err:
        print(f"napari-dip: error: {err}", file=sys.stderr)
        return 2
    except ImportError as err:
        print(f"napari-dip: error: {err}", file=sys.stderr)
        return 3
