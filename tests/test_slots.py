"""The network and task slots: every registered network packs its problems by the one rule;
tasks say what they need; presets come from the task."""
import pytest
import torch

from napari_dip.core.networks import NETWORKS, check_packing, network_name
from napari_dip.core.nets.decoder import DecoderConfig
from napari_dip.core.nets.resunet import ResUNetConfig
from napari_dip.core.nets.skip import SkipConfig
from napari_dip.core.operators import Convolve, Cropped, Identity
from napari_dip.core.presets import FAST_NET, FAST_RESUNET
from napari_dip.core.task import TASKS, build_problem, get_preset, make_config

SMALL = {"skip": SkipConfig(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4),
         "resunet": ResUNetConfig(channels=(8, 8), code_channels=4, dropout=0.0),
         "decoder": DecoderConfig(channels=8, blocks=2, scale=4)}


@pytest.mark.parametrize("name", list(SMALL))
def test_every_registered_network_packs_its_problems_by_the_rule(name):
    config = SMALL[name]
    assert NETWORKS.get(name) is type(config) and network_name(config) == name
    check_packing(config, out_channels=2)
    h, w = config.padded_size(13, 21)
    assert h % config.size_multiple == 0 and w % config.size_multiple == 0 and h >= 13 and w >= 21


def test_a_network_breaking_the_packing_rule_is_caught():
    class Shared(torch.nn.Module):  # one weight for all problems: not packed
        def __init__(self, groups):
            super().__init__()
            self.groups = groups
            self.weight = torch.nn.Parameter(torch.randn(1))

        def forward(self, code):
            return code[:, :1] * self.weight

    class Config(SkipConfig):
        def build(self, out_channels, groups=1):
            return Shared(groups)

    with pytest.raises(ValueError, match="expected 3 blocks"):
        check_packing(Config())
    assert network_name(Config()) == "custom"


def test_tasks_declare_their_inputs_and_presets():
    assert set(TASKS) >= {"denoise", "superres", "inpaint", "fit", "deconvolve", "restore"}
    assert get_preset("deconvolve").network == FAST_NET
    assert get_preset("denoise", architecture="resunet").network == FAST_RESUNET
    assert get_preset("denoise").warm_start and not get_preset("superres").warm_start
    with pytest.raises(ValueError, match="unknown task 'deblur'; choose one of denoise"):
        make_config("deblur")
    config = make_config("deconvolve", network=SMALL["skip"])
    observed = torch.rand(2, 1, 13, 15)
    with pytest.raises(ValueError, match="deconvolution needs a psf"):
        build_problem(config, observed, seeds=[0, 0])
    with pytest.raises(ValueError, match="deconvolution takes no mask"):
        build_problem(config, observed, seeds=[0, 0], inputs={"psf": torch.ones(3, 3), "mask": observed})


def test_a_cropping_task_fits_the_network_s_size_and_crops_before_the_operator():
    config = make_config("deconvolve", network=SMALL["skip"])
    problem = build_problem(config, torch.rand(2, 1, 13, 15), seeds=[0, 0],
                            inputs={"psf": torch.ones(3, 3), "boundary": "zero"})
    op = problem.operator
    assert isinstance(op, Cropped) and isinstance(op.inner, Convolve) and op.inner.boundary == "zero"
    assert problem.code.shape[-2:] == (16, 16)  # the skip network's multiple of 4
    assert op(torch.rand(2, 1, 16, 16)).shape == (2, 1, 13, 15)
    # a user's operator, and an image larger than the observation
    config = make_config("restore", network=SMALL["skip"])
    pool = torch.nn.AvgPool2d(2)
    problem = build_problem(config, torch.rand(1, 1, 10, 7), seeds=[0], inputs={"operator": pool}, size=(20, 14))
    assert problem.code.shape[-2:] == (20, 16)
    assert problem.operator(torch.rand(1, 1, 20, 16)).shape == (1, 1, 10, 7)
    assert make_config("denoise").spec.operator(1).__class__ is Identity
