"""``python -m napari_dip.cli``: the same as the ``napari-dip`` command."""
import sys

from . import main

# Guarded: Dask's worker processes start by importing this module again (as __mp_main__); an
# unguarded call would run the command again inside every worker, which then never takes a task.
if __name__ == "__main__":
    sys.exit(main())
