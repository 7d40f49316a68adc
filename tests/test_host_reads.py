"""The fitting loop reads the device once per iteration (a GPU never waits for it more often)."""
import numpy as np
import pytest
import torch

from napari_dip.core.fit import FitSettings, fit
from napari_dip.core.noise_stop import DiscrepancyStop
from napari_dip.core.stopping import DataFitStop, GatedVarianceStop, OracleStop, StopSettings, make_stop_rule
from napari_dip.core.task import build_problem, make_config

from syncs import HostReads

CPU = torch.device("cpu")
EMV = StopSettings(variant="emv", window=10, patience=1000)
RULES = {
    "fixed": lambda y: make_stop_rule("fixed", len(y)),
    "variance": lambda y: make_stop_rule("auto", len(y), EMV),
    "variance after discrepancy": lambda y: GatedVarianceStop(len(y), EMV, DiscrepancyStop(y, [1e-6] * len(y))),
    "data fit": lambda y: DataFitStop(len(y), 1e-6),
    "oracle": lambda y: OracleStop(len(y)),
}


def _reads_per_iteration(rule: str, parallel: int, iterations: int = 24) -> list[int]:
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.random((2, 1, 64, 64)).astype(np.float32))
    config = make_config("denoise", preset="fast", iterations=iterations, stop="fixed")
    problem = build_problem(config, y, seeds=[0, 0], ground_truth=y if rule == "oracle" else None)
    gen = fit(problem, FitSettings(iterations=iterations, parallel=parallel, metrics_every=0),
              RULES[rule](y), device=CPU)
    counts = []
    with HostReads() as reads:
        for _ in gen:  # each step of the generator runs one iteration
            counts.append(reads.count)
    return np.diff(counts).tolist()


@pytest.mark.parametrize("rule", list(RULES))
@pytest.mark.parametrize("parallel", [1, 2])
def test_one_read_per_iteration_whatever_the_rule(rule, parallel):
    # after the first iteration (the scheduler's set-up), every iteration reads once: its
    # losses, done and jump flags (and the PSNR with a ground truth) in one transfer; the
    # snapshot iterations (10, 20) and the rules' bookkeeping add none
    assert _reads_per_iteration(rule, parallel) == [1] * 23


def test_the_counter_sees_the_reads_it_counts():
    with HostReads() as reads:
        t = torch.arange(4.0)
        t.tolist(), bool(t.any()), t[t > 1], t.item() if t.numel() == 1 else float(t.sum())
    assert reads.count == 4
