"""A task over volumes and file lists: slice by slice along an axis, resumable, optionally on Dask."""
from ..arrays import Slicing, parse_slices, slicing_for
from .cluster import ClusterLost, open_client
from .files import expand_inputs, output_for
from .lock import OutputLocked, output_lock
from .runner import process_volume
from .steps import NotEnoughMemory, Notice, SliceFailed, VolumeStart, work_folder
from .store import SliceStore, settings_key

__all__ = ["process_volume", "open_client", "expand_inputs", "output_for", "work_folder",
           "VolumeStart", "SliceFailed", "Notice", "SliceStore", "settings_key", "Slicing", "slicing_for",
           "parse_slices", "output_lock", "OutputLocked", "ClusterLost", "NotEnoughMemory"]
