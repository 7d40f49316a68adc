"""api.denoise with noise models: per-slice estimates in the report, given parameters, the
loss they select, Rician bias removal, and one clear error for misuse."""
import numpy as np
import pytest

from napari_dip import api
from napari_dip.core.noise import NoiseModel
from napari_dip.core.noise_losses import GaussianNLL, VstMSE
from napari_dip.core.noise_setup import NoiseSetup

TINY = dict(network=dict(channels_down=(8, 8), channels_up=(8, 8), channels_skip=(2, 2), code_channels=4),
            iterations=20, device="cpu")


def _scene(n=64):
    yy, xx = np.mgrid[0:n, 0:n] / n
    return 50 + 150 * xx + 30 * np.sin(6 * yy)


def test_estimated_models_go_into_each_slice_record():
    rng = np.random.default_rng(0)
    stack = np.stack([np.clip(a * rng.poisson(_scene() / a) + rng.normal(0, 4, (64, 64)), 0, 255)
                      for a in (2.0, 6.0)]).astype(np.uint8)
    out, report = api.denoise(stack, noise="poisson-gaussian", return_report=True, warm_start=False, **TINY)
    assert out.shape == stack.shape and report["noise"] == "poisson-gaussian" and report["noise_loss"] == "vst-mse"
    gains = [s["noise"]["a"] for s in report["slices"]]
    assert [s["noise_source"] for s in report["slices"]] == ["estimated"] * 2
    assert gains[0] == pytest.approx(2.0, rel=0.35) and gains[1] == pytest.approx(6.0, rel=0.35)


def test_given_parameters_are_used_for_every_slice():
    img = np.clip(_scene() + np.random.default_rng(1).normal(0, 5, (64, 64)), 0, 255).astype(np.uint8)
    _, report = api.denoise(img, noise="poisson-gaussian", noise_params=(1.5, 9.0), return_report=True, **TINY)
    assert report["slices"][0]["noise"] == {"kind": "poisson-gaussian", "a": 1.5, "b": 9.0}
    assert report["slices"][0]["noise_source"] == "given" and report["slices"][0]["loss"] == "vst-mse"
    _, plain = api.denoise(img, noise="gaussian", return_report=True, **TINY)
    assert plain["noise"] == "gaussian" and plain["noise_loss"] == "mse" and "noise" not in plain["slices"][0]


def test_the_default_fits_gaussian_noise_exactly_as_the_gaussian_setting():
    """denoise() with no options estimates the noise; on Gaussian noise (clipped to 8 bits, as
    saved images are) it picks the Gaussian model, the squared error and the variance rule
    gated by the estimated noise level: in a fit too short for the gate to matter, the same
    output, bit for bit, as noise='gaussian'."""
    rng = np.random.default_rng(5)
    img = np.clip(_scene() + rng.normal(0, 20, (64, 64)), 0, 255).astype(np.uint8)
    small = dict(TINY, iterations=30)
    out, report = api.denoise(img, return_report=True, **small)
    (record,) = report["slices"]
    assert report["noise"] == "auto" and record["noise"]["kind"] == "gaussian"
    assert record["loss"] == "mse" and record["stop_rule"] == "variance after discrepancy"
    same = api.denoise(img, noise="gaussian", **small)
    np.testing.assert_array_equal(out, same)


def test_a_tiled_slice_reports_its_noise_model_stop_and_loss_like_a_whole_one():
    """Tiles share their slice's model: the slice record and every tile's carry it, with the
    rule and the loss of the fit (shot noise here: vst-mse and the discrepancy stop)."""
    rng = np.random.default_rng(2)
    img = np.clip(3.0 * rng.poisson(_scene(96) / 3.0) + rng.normal(0, 3, (96, 96)), 0, 255).astype(np.uint8)
    _, whole = api.denoise(img, return_report=True, **dict(TINY, iterations=3))
    _, tiled = api.denoise(img, tile_size=64, return_report=True, **dict(TINY, iterations=3))
    (slice_whole,), (slice_tiled,) = whole["slices"], tiled["slices"]
    assert len(slice_tiled["tiles"]) == 4 and slice_whole["noise"]["kind"] == "poisson-gaussian"
    for record in (slice_tiled, *slice_tiled["tiles"]):
        assert record["noise"] == slice_whole["noise"] and record["noise_source"] == "estimated"
        assert record["stop_rule"] == slice_whole["stop_rule"] == "discrepancy"
        assert record["loss"] == "vst-mse"


def test_a_given_loss_is_used_as_is_and_refused_with_a_noise_model():
    img = np.clip(_scene() + np.random.default_rng(6).normal(0, 5, (64, 64)), 0, 255).astype(np.uint8)
    _, report = api.denoise(img, loss="mse", return_report=True, **TINY)
    assert "noise" not in report["slices"][0]  # no estimate: the loss given is the fidelity
    with pytest.raises(ValueError, match="both set the data fidelity"):
        api.denoise(img, loss="mse", noise="poisson-gaussian", **TINY)


def test_models_become_losses_in_the_fit_units():
    loss = NoiseSetup("poisson-gaussian").loss_for([NoiseModel("poisson-gaussian", 2.55, 6.5025)], 0.0, 255.0)
    assert isinstance(loss, VstMSE)
    assert float(loss.a[0]) == pytest.approx(0.01) and float(loss.b[0]) == pytest.approx(1e-4)
    nll = NoiseSetup("auto", loss="gaussian-nll").loss_for(
        [NoiseModel("gaussian", 0.0, 65.025), NoiseModel("poisson", 2.55, 0.0)], 0.0, 255.0)
    assert isinstance(nll, GaussianNLL) and nll.a.tolist() == pytest.approx([0.0, 0.01])
    assert NoiseSetup("auto").loss_for([NoiseModel("gaussian", 0.0, 1.0)], 0.0, 255.0) is None  # plain MSE
    given = NoiseSetup("poisson-gaussian", (2.0, 30.0)).rescaled(10.0, 500.0)
    assert given.params == pytest.approx((2.0 / 500, (2.0 * 10 + 30) / 500 ** 2))


def test_rician_outputs_lose_the_noise_floor_bias():
    model = NoiseModel("rician", 0.0, 16.0)
    floor = 4.0 * np.sqrt(np.pi / 2) / 100  # the mean magnitude of pure noise, in unit scale
    out = NoiseSetup.finish(np.array([floor, 0.5]), model, 0.0, 100.0)
    assert out[0] == pytest.approx(0.0, abs=2e-3) and out[1] == pytest.approx(np.sqrt(0.25 - 0.0016), rel=1e-3)


def test_noise_option_mistakes_give_one_clear_error():
    img = np.zeros((32, 32), np.uint8)
    with pytest.raises(ValueError, match="unknown noise model 'shot'"):
        api.denoise(img, noise="shot", **TINY)
    with pytest.raises(ValueError, match=r"noise_params must be \(a, b\)"):
        api.denoise(img, noise="poisson-gaussian", noise_params=(1.0,), **TINY)
    with pytest.raises(TypeError, match="noise"):  # only denoise takes a noise model
        api.super_resolve(img, 2, noise="poisson", **TINY)
    with pytest.raises(ValueError, match="noise models are for denoising"):
        api.make_config("superres", factor=2, noise="poisson")


def test_cli_denoise_takes_the_noise_model_and_reports_it(tmp_path):
    import json

    from napari_dip.cli import main
    rng = np.random.default_rng(2)
    src, out, rep = tmp_path / "in.npy", tmp_path / "out.npy", tmp_path / "r.json"
    np.save(src, np.clip(2.0 * rng.poisson(_scene() / 2.0), 0, 255).astype(np.uint8))
    net = "--iterations 5 --stop fixed --device cpu --quiet".split()
    assert main(["denoise", str(src), "-o", str(out), "--noise", "poisson-gaussian", "--noise-params", "2,9",
                 "--report", str(rep), *net]) == 0
    report = json.loads(rep.read_text())
    (record,) = report["slices"]
    # The batch runner fits the volume scaled to [0, 1] (here by 1/255): the given model follows it.
    assert record["noise_source"] == "given"
    assert record["noise"]["a"] == pytest.approx(2 / 255) and record["noise"]["b"] == pytest.approx(9 / 255 ** 2)
    assert np.load(out).shape == (64, 64)
