"""napari dock widgets: one module per task, all sharing the form and the job runner."""
