"""A task over volumes and file lists: slice by slice along an axis, resumable, optionally on Dask."""
from .cluster import open_client
from .files import expand_inputs, output_for
from .runner import SliceFailed, VolumeStart, process_volume, work_folder
from .store import SliceStore, settings_key
from .volume import Slicing, parse_range, slicing_for

__all__ = ["process_volume", "open_client", "expand_inputs", "output_for", "work_folder",
           "VolumeStart", "SliceFailed", "SliceStore", "settings_key", "Slicing", "slicing_for",
           "parse_range"]
