"""Classical baselines under the estimated noise model: library and ``napari-dip baseline``."""
import json
import sys

import numpy as np
import pytest

from napari_dip import baselines
from napari_dip.baselines import denoise_baseline, denoise_slice
from napari_dip.cli import main
from napari_dip.core.noise import NoiseModel


def _scene(n=64):
    yy, xx = np.mgrid[0:n, 0:n] / n
    return 20 + 150 * ((xx > 0.5) ^ (yy > 0.3)) + 40 * xx


def _psnr(x, ref):
    return 10 * np.log10(255 ** 2 / np.mean((x - ref) ** 2))


@pytest.mark.parametrize("method", ["nlm", "vst-bm3d"])
def test_baselines_under_the_poisson_gaussian_model_beat_the_noisy_input(method):
    clean = _scene()
    rng = np.random.default_rng(0)
    noisy = 4.0 * rng.poisson(clean / 4.0) + rng.normal(0, 5, clean.shape)
    out, report = denoise_baseline(noisy, method)
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert _psnr(out, clean) > _psnr(noisy, clean) + 6
    (rec,) = report["slices"]
    assert rec["noise"]["kind"] == "poisson-gaussian" and rec["noise_source"] == "estimated"
    assert rec["noise"]["a"] == pytest.approx(4.0, rel=0.3)


def test_vst_beats_one_sigma_on_signal_dependent_noise():
    clean = _scene()
    rng = np.random.default_rng(1)
    noisy = 8.0 * rng.poisson(clean / 8.0)
    vst = denoise_slice(noisy, "nlm", NoiseModel("poisson", 8.0, 0.0))
    one_sigma = denoise_slice(noisy, "nlm", NoiseModel("gaussian", 0.0, float(np.var(noisy - clean))))
    assert _psnr(vst, clean) > _psnr(one_sigma, clean)


def test_stacks_go_slice_by_slice_with_given_parameters():
    rng = np.random.default_rng(2)
    stack = np.stack([_scene() + rng.normal(0, 6, (64, 64)) for _ in range(2)])
    out, report = denoise_baseline(stack, "nlm", noise="gaussian", noise_params=(0.0, 36.0))
    assert out.shape == stack.shape
    assert [r["slice"] for r in report["slices"]] == [0, 1]
    assert all(r["noise"] == {"kind": "gaussian", "a": 0.0, "b": 36.0} for r in report["slices"])
    np.testing.assert_array_equal(out[1], denoise_baseline(stack[1], "nlm", noise="gaussian",
                                                           noise_params=(0.0, 36.0))[0])


def test_cli_writes_the_output_and_the_noise_report(tmp_path, capsys):
    rng = np.random.default_rng(3)
    src, out, rep = tmp_path / "in.npy", tmp_path / "out.npy", tmp_path / "r.json"
    noisy = 2.0 * rng.poisson(_scene() / 2.0)
    np.save(src, noisy)
    before = src.read_bytes()
    assert main(["baseline", str(src), "-o", str(out), "--method", "nlm", "--report", str(rep)]) == 0
    assert src.read_bytes() == before
    result = np.load(out)
    assert result.shape == noisy.shape and _psnr(result, _scene()) > _psnr(noisy, _scene()) + 5
    report = json.loads(rep.read_text())
    assert report["method"] == "nlm" and report["slices"][0]["noise"]["kind"] in ("poisson", "poisson-gaussian")
    assert "noise poisson" in capsys.readouterr().out


def test_cli_mistakes_give_one_line(tmp_path, capsys, monkeypatch):
    src = tmp_path / "in.npy"
    np.save(src, _scene())
    with pytest.raises(SystemExit):
        main(["baseline", str(src), "-o", str(tmp_path / "o.npy"), "--noise-params", "3"])
    assert "two numbers 'a,b'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "bm3d", None)  # as if not installed
    assert main(["baseline", str(src), "-o", str(tmp_path / "o.npy")]) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'napari-dip[baselines]'" in err[0]
    assert not (tmp_path / "o.npy").exists()
    with pytest.raises(ValueError, match="not rician"):
        baselines.denoise_slice(_scene(), "nlm", NoiseModel("rician", 0.0, 4.0))
