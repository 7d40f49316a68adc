"""The residual U-Net with dropout: shapes, packing, dropout switch, task option, a real fit."""
import numpy as np
import pytest
import torch

from napari_dip.core.fit import drain, fit
from napari_dip.core.metrics import psnr
from napari_dip.core.nets.factory import build_network
from napari_dip.core.nets.resunet import ResUNetConfig
from napari_dip.core.task import build_problem, make_config

SMALL = ResUNetConfig(channels=(8, 16, 16), code_channels=4)


def test_shapes_and_size_protocol():
    net = SMALL.build(3, groups=2)
    with torch.no_grad():
        out = net(torch.rand(2, 4, 32, 48))
    assert out.shape == (2, 3, 32, 48) and float(out.min()) >= 0 and float(out.max()) <= 1
    assert SMALL.padded_size(30, 9) == (32, 12) and SMALL.padded_size(3, 5) == (8, 8)  # multiples of 4, >= 8
    assert SMALL.code_shape(32, 48) == (4, 32, 48)
    for bad, match in ((dict(dropout=1.0), "dropout"), (dict(downsample="stride"), "downsampling"),
                       (dict(channels=()), "channels"), (dict(activation="tanh"), "activation")):
        with pytest.raises(ValueError, match=match):
            ResUNetConfig(**bad).validate()


def test_encoder_decoder_blocks_have_shortcuts_and_skips():
    net = ResUNetConfig(channels=(8, 8, 16), code_channels=8, dropout=0).build(1)
    assert isinstance(net.encoders[1].shortcut, torch.nn.Identity)      # 8 -> 8: identity
    assert not isinstance(net.encoders[2].shortcut, torch.nn.Identity)  # 8 -> 16: 1x1 projection
    assert net.decoders[0].body[0][-1].in_channels == 8 + 8             # U-Net skip concatenation
    convs = [m for m in net.encoders[0].body if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(convs) == 2                                              # Conv-BN-Act-Conv-BN-Act


def test_packed_networks_equal_separate_ones_with_dropout_off():
    packed = build_network(lambda g: SMALL.build(1, g), [3, 5])
    singles = [build_network(lambda g: SMALL.build(1, g), [s]) for s in (3, 5)]
    code = torch.rand(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad(), packed.dropout_off():
        both = packed(code)
    for k, net in enumerate(singles):
        with torch.no_grad(), net.dropout_off():
            torch.testing.assert_close(both[k:k + 1], net(code[k:k + 1]), rtol=1e-4, atol=1e-5)


def test_dropout_is_on_in_training_and_switchable():
    net = ResUNetConfig(channels=(8, 16), code_channels=4, dropout=0.5).build(1).train()
    code = torch.rand(1, 4, 16, 16)
    with torch.no_grad():
        a, b = net(code), net(code)
        with net.dropout_off():
            c, d = net(code), net(code)
    assert not torch.allclose(a, b)
    torch.testing.assert_close(c, d)
    assert net.drop.training  # restored after the block


def test_architecture_option_in_every_task():
    for task, kw in (("denoise", {}), ("superres", dict(factor=4)), ("inpaint", {})):
        cfg = make_config(task, architecture="resunet", **kw)
        assert isinstance(cfg.network, ResUNetConfig) and cfg.architecture == "resunet"
    cfg = make_config("denoise", architecture="resunet", network=dict(dropout=0.2, channels=[8, 16]))
    assert cfg.network.dropout == 0.2 and cfg.network.channels == (8, 16)
    assert make_config("denoise").architecture == "skip"
    with pytest.raises(ValueError, match="unknown architecture 'vit'"):
        make_config("denoise", architecture="vit")
    with pytest.raises(ValueError, match="unknown network option.*channels_down"):
        make_config("denoise", architecture="resunet", network=dict(channels_down=(8,)))


@pytest.mark.slow
def test_resunet_denoises_a_smooth_image():
    torch.set_num_threads(1)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 32), torch.linspace(0, 1, 32), indexing="ij")
    clean = (0.5 + 0.3 * torch.sin(6 * xx) * torch.cos(4 * yy))[None, None]
    noisy = (clean + 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    cfg = make_config("denoise", architecture="resunet", iterations=300, lr=0.01, stop="oracle",
                      network=dict(channels=(8, 16, 16), code_channels=8))
    problem = build_problem(cfg, noisy, seeds=[0], ground_truth=clean)
    result = drain(fit(problem, cfg.fit, cfg.stop_rule(1), device=torch.device("cpu")))
    gain = float(psnr(torch.from_numpy(result.output), clean)[0] - psnr(noisy, clean)[0])
    assert gain > 5, gain
    assert np.isfinite(result.loss_curve).all()



def test_fitted_outputs_are_evaluated_with_dropout_off():
    """The returned output is the network with dropout off, at the final weights."""
    config = make_config("denoise", architecture="resunet", iterations=3, stop="fixed", ema=0.0,
                         code_noise=0.0, network={"channels": (4, 8), "dropout": 0.5}, precision="fp32")
    problem = build_problem(config, torch.rand(1, 1, 16, 16), seeds=[0])
    net = problem.network
    result = drain(fit(problem, config.fit, config.stop_rule(1), device=torch.device("cpu")))
    with torch.no_grad(), net.dropout_off():
        expected = net(problem.code).numpy()
    with torch.no_grad():
        noisy = net(problem.code).numpy()  # dropout on: differs
    np.testing.assert_allclose(result.output, expected, atol=1e-6)
    assert not np.allclose(result.output, noisy, atol=1e-4)


def _fit_resunet(observed, seeds):
    config = make_config("denoise", architecture="resunet", iterations=15, stop="fixed", precision="fp32",
                         network={"channels": (4, 8), "dropout": 0.3})
    problem = build_problem(config, torch.from_numpy(observed), seeds=seeds)
    return drain(fit(problem, config.fit, config.stop_rule(len(seeds)), device=torch.device("cpu"))).output


def test_dropout_masks_come_from_the_seed_so_fits_repeat_and_batch_like_alone():
    yy, xx = np.mgrid[0:16, 0:16] / 16
    observed = np.stack([0.5 + 0.3 * np.sin((4 + k) * xx) * np.cos(3 * yy) for k in range(3)])[:, None]
    observed = (observed + 0.1 * np.random.default_rng(0).standard_normal(observed.shape)).astype(np.float32)
    torch.manual_seed(123)  # the global generator must not matter
    first = _fit_resunet(observed, [1, 2, 3])
    torch.manual_seed(456)
    again = _fit_resunet(observed, [1, 2, 3])
    np.testing.assert_array_equal(first, again)
    for i, seed in enumerate([1, 2, 3]):
        np.testing.assert_allclose(first[i], _fit_resunet(observed[i:i + 1], [seed])[0], atol=2e-5)
    assert not np.allclose(first[0], _fit_resunet(observed[:1], [7])[0], atol=1e-3)  # other seed, other fit
    # one seed for all (a stack): one code and noise stream, each problem's masks still its own
    shared = _fit_resunet(observed, [5, 5, 5])
    for i in range(3):
        np.testing.assert_allclose(shared[i], _fit_resunet(observed[i:i + 1], [5])[0], atol=2e-5)
