"""The public functions' docstrings: every parameter documented once, in numpydoc form."""
import inspect
import re

import pytest

import napari_dip
from napari_dip.api import OPTIONS_DOC


@pytest.mark.parametrize("name", ["denoise", "super_resolve", "inpaint", "deconvolve", "restore"])
def test_help_documents_every_parameter_exactly_once(name):
    func = getattr(napari_dip, name)
    doc = func.__doc__
    assert "{options}" not in doc and "As for :func:" not in doc
    documented = re.findall(r"^    (\w+) : ", doc, flags=re.M)
    params = list(inspect.signature(func).parameters)
    assert sorted(documented) == sorted(params + ["output", "report"])  # the Returns entries too
    other = doc.split("Other Parameters")[1].split("Returns")[0]
    assert "    cancel : callable, optional\n        Polled between iterations" in other


def test_each_shared_option_is_defined_once():
    names = re.findall(r"^(\w+) : ", OPTIONS_DOC, flags=re.M)
    assert len(names) == len(set(names)) and {"preset", "loss", "max_memory", "cancel"} <= set(names)
