"""The skip network: parameter counts, shapes, knobs, packing of independent problems."""
import numpy as np
import pytest
import torch

from napari_dip.core.nets import SkipConfig, SkipNet, build_network, count_parameters
from napari_dip.core.nets.blocks import ACTIVATIONS, DOWNSAMPLERS, PADDINGS, UPSAMPLERS
from napari_dip.core.nets.decoder import DecoderConfig
from napari_dip.core.nets.resunet import ResUNetConfig

SMALL = SkipConfig(channels_down=(4, 8), channels_up=(4, 8), channels_skip=(2, 2), code_channels=3)


def test_paper_f16_network_has_2217831_parameters():
    assert count_parameters(SkipNet(SkipConfig(), out_channels=3)) == 2_217_831


def test_packed_network_counts_parameters_per_problem():
    assert count_parameters(SkipNet(SkipConfig(), 3, groups=4), groups=4) == 2_217_831


@pytest.mark.parametrize("h, w, expected", [(37, 50, (64, 64)), (64, 96, (64, 96)), (5, 200, (64, 224))])
def test_padded_size_is_a_multiple_of_two_to_the_scales(h, w, expected):
    assert SkipConfig().padded_size(h, w) == expected


def test_output_shape_matches_code_shape():
    net = SkipNet(SMALL, out_channels=2)
    out = net(torch.rand(1, 3, 12, 20))
    assert out.shape == (1, 2, 12, 20)
    assert 0 <= float(out.detach().min()) and float(out.detach().max()) <= 1  # sigmoid output


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("down", DOWNSAMPLERS)
@pytest.mark.parametrize("up", UPSAMPLERS)
def test_every_knob_builds_and_keeps_shapes(act, down, up):
    cfg = SkipConfig(channels_down=(4, 4), channels_up=(4, 4), channels_skip=(0, 2), code_channels=2,
                     activation=act, downsample=down, upsample=up)
    assert SkipNet(cfg, 1)(torch.rand(1, 2, 8, 8)).shape == (1, 1, 8, 8)


@pytest.mark.parametrize("pad", PADDINGS)
def test_padding_and_batchnorm_options(pad):
    cfg = SkipConfig(channels_down=(4,), channels_up=(4,), channels_skip=(1,), code_channels=2,
                     pad=pad, batchnorm=False, sigmoid=False, conv1x1_up=False)
    net = SkipNet(cfg, 1)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert net(torch.rand(1, 2, 6, 6)).shape == (1, 1, 6, 6)


@pytest.mark.parametrize("field, value", [("activation", "tanh"), ("downsample", "lanczos"),
                                          ("upsample", "cubic"), ("pad", "circular")])
def test_unknown_options_name_the_choices(field, value):
    cfg = SkipConfig(**{field: value})
    with pytest.raises(ValueError, match="choose one of"):
        SkipNet(cfg, 1)


def test_mismatched_channel_lists_are_rejected():
    with pytest.raises(ValueError, match="one entry per scale"):
        SkipConfig(channels_down=(8, 8), channels_up=(8,), channels_skip=(1, 1)).validate()


def test_packed_networks_equal_separately_seeded_ones():
    seeds = [3, 11]
    packed = build_network(lambda g: SkipNet(SMALL, 2, groups=g), seeds)
    code = torch.rand(2, 3, 16, 16)
    together = packed(code)
    for i, seed in enumerate(seeds):
        single = build_network(lambda g: SkipNet(SMALL, 2, groups=g), [seed])
        torch.testing.assert_close(single(code[i:i + 1]), together[i:i + 1], atol=1e-5, rtol=1e-4)


def test_packed_problems_do_not_share_normalisation():
    packed = build_network(lambda g: SkipNet(SMALL, 1, groups=g), [0, 0])
    code = torch.rand(1, 3, 16, 16)
    a = packed(torch.cat([code, code]))
    b = packed(torch.cat([code, code * 50 + 3]))  # problem 2 changes, problem 1 must not
    torch.testing.assert_close(a[0], b[0])


def test_build_network_leaves_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_network(lambda g: SkipNet(SMALL, 1, groups=g), [7])
    assert torch.equal(torch.rand(3), expected)


def test_seeded_construction_is_thread_safe():
    from concurrent.futures import ThreadPoolExecutor

    def weights(seed):
        net = build_network(lambda g: SkipNet(SMALL, 1, groups=g), [seed])
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    expected = weights(5)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(weights, [5] * 16))
    assert all(torch.equal(r, expected) for r in results)


@pytest.mark.parametrize("make", [
    lambda g: SkipNet(SMALL, 1, g),
    lambda g: ResUNetConfig(channels=(4, 8), code_channels=3).build(1, g),
    lambda g: DecoderConfig(channels=6, blocks=2, scale=4).build(1, g),
])
def test_a_code_shared_by_every_problem_enters_once_and_gives_what_copies_give(make):
    torch.manual_seed(0)
    net = make(3).eval()
    assert net.shares_code
    code = torch.rand(1, *net.cfg.code_shape(16, 16))
    with torch.no_grad():
        np.testing.assert_allclose(net(code).numpy(), net(code.expand(3, -1, -1, -1)).numpy(), atol=1e-6)
    # a residual U-Net whose first shortcut is the identity adds the code itself: no sharing
    assert not ResUNetConfig(channels=(3, 8), code_channels=3).build(1, 2).shares_code
