"""``python -m napari_dip.cli``: the same as the ``napari-dip`` command."""
import sys

from . import main

sys.exit(main())
