"""The Deep Decoder network and its config: sizes, parameter counts, packing, layouts."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from napari_dip.core.nets import build_network, count_parameters
from napari_dip.core.nets.decoder import DecoderConfig


def test_sizes_spread_the_scale_over_the_blocks():
    cfg = DecoderConfig(channels=8, blocks=6, scale=8).validate()
    assert cfg.padded_size(192, 235) == (192, 240)
    assert cfg.code_shape(192, 240) == (8, 24, 30)
    assert cfg.sizes(24, 30) == [(34, 42), (48, 60), (68, 85), (96, 120), (136, 170), (192, 240)]
    assert DecoderConfig(channels=4, blocks=3, scale=1).sizes(10, 12) == [(10, 12)] * 3


@pytest.mark.parametrize("channels,blocks,out", [(96, 6, 1), (16, 4, 3), ((32, 16, 8), 3, 1)])
def test_parameter_count_matches_the_formula(channels, blocks, out):
    cfg = DecoderConfig(channels=channels, blocks=blocks, scale=4)
    widths = cfg.widths
    ins = (widths[0],) + widths[:-1]
    expected = sum(a * b + 2 * b for a, b in zip(ins, widths)) + widths[-1] * out
    assert cfg.parameters(out) == expected == count_parameters(cfg.build(out))
    if channels == 96:
        assert expected == 56544  # the MRI benchmark's decoder


def test_output_shape_range_and_packed_equals_sequential():
    cfg = DecoderConfig(channels=8, blocks=3, scale=4, channels_last=False)
    seeds = [3, 4, 5]
    packed = build_network(lambda g: cfg.build(2, g), seeds)
    assert count_parameters(packed, 3) == cfg.parameters(2)
    code = torch.rand(3, 8, 5, 6)
    out = packed(code)
    assert out.shape == (3, 2, 20, 24) and 0 <= out.min() and out.max() <= 1
    for i, s in enumerate(seeds):
        single = build_network(lambda g: cfg.build(2, g), [s])
        torch.testing.assert_close(single(code[i:i + 1]), out[i:i + 1], atol=1e-5, rtol=1e-4)
    # each member normalises with its own statistics: changing one code leaves the others alone
    other = code.clone()
    other[0] = torch.rand(8, 5, 6)
    torch.testing.assert_close(packed(other)[1:], out[1:])


def test_channels_last_matches_default_layout_on_low_variance_codes():
    torch.manual_seed(0)
    a = DecoderConfig(channels=16, blocks=3, scale=4).build(1)
    b = replace(a.cfg, channels_last=False).build(1)
    b.load_state_dict(a.state_dict())
    code = 1 + 0.003 * torch.randn(1, 16, 8, 8)
    torch.testing.assert_close(a(code), b(code), atol=1e-3, rtol=0)


def test_nearest_upsampling_repeats_pixels():
    cfg = DecoderConfig(channels=4, blocks=1, scale=2, upsample="nearest", sigmoid=False, channels_last=False)
    net = cfg.build(1)
    out = net(torch.rand(1, 4, 3, 3))[0, 0]
    assert torch.equal(out[0::2, 0::2], out[1::2, 1::2])


@pytest.mark.parametrize("kwargs,match", [({"blocks": 0}, "blocks"), ({"channels": (8, 8), "blocks": 3}, "one entry"),
                                          ({"scale": 1.5}, "scale"), ({"upsample": "cubic"}, "upsampling"),
                                          ({"channels": 0}, "positive")])
def test_validate_names_the_bad_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        DecoderConfig(**kwargs).validate()
