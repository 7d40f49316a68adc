"""Speed benchmark of the fitting engine; writes a markdown table into docs/speed.md.

(a) the paper network (F16 skip net, grey output) per iteration at 256 x 256: fp32 eager
    against the engine's fastest settings, interleaved A B A B and timed in CPU seconds;
(b) stacks of ISBI EM sections and of T1 MRI slices with Gaussian noise (sigma 25/255): one
    cold slice at a time against a batch, warm starts, and both, slices per CPU minute on one
    thread and mean PSNR (optionally a longer ISBI stack, ``--long-slices``); then the same
    stacks on every core of the machine in wall-clock time, where a batch is fitted as
    parallel groups (one per core) and one slice at a time has all cores to itself;
    ``--ceiling`` adds what warm starts can give at best: for each slice, how many iterations
    a fit started from the previous slice's cold weights needs before its output is as good
    as the slice's own cold fit (measured against the ground truth, i.e. an oracle stop);
    ``--bounds`` what batching can give at best: the per-slice cost of the slices through
    one shared network (activations only), with one thread and with two;
(c) the peak memory (max RSS) of a process fitting the stack one slice at a time, in one
    batch, and a 200-slice volume in batches: bounded by the batch, not by the volume.

Run from the project root:  python benchmarks/speed.py  (``--help`` for sizes).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from napari_dip.api import WARM_LR_RAMP, SliceDone, run
from napari_dip.core.fit import cpu_has_fast_bf16, drain, fit
from napari_dip.core.task import build_problem, make_config

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
ISBI = DATA / "em" / "isbi2012_train_volume.tif"
MRI = DATA / "mri" / "niimath_T1.nii.gz"
SIGMA = 25 / 255
STACK_NAMES = {"isbi": "ISBI EM sections", "mri": "axial T1 MRI slices"}


def cpu_seconds_per_iteration(precision: str, layout: str, size: int, iterations: int) -> float:
    """Median CPU seconds per iteration (after the first) of the paper net on one grey image."""
    config = make_config("denoise", preset="paper", iterations=iterations, stop="fixed",
                         precision=precision)
    config = replace(config, fit=replace(config.fit, layout=layout))
    problem = build_problem(config, torch.rand(1, 1, size, size, generator=torch.Generator().manual_seed(0)),
                            seeds=[0])
    stamps = [time.process_time()]
    drain(fit(problem, config.fit, config.stop_rule(1), device=torch.device("cpu")),
          lambda event: stamps.append(time.process_time()))
    return float(np.median(np.diff(stamps)[1:]))


def part_a(size: int, iterations: int, repeats: int) -> dict:
    variants = {"fp32 eager": ("fp32", "default"), "engine (auto)": ("auto", "auto")}
    times = {k: [] for k in variants}
    for _ in range(repeats):  # interleaved: A B A B ...
        for name, (precision, layout) in variants.items():
            times[name].append(cpu_seconds_per_iteration(precision, layout, size, iterations))
    return {k: min(v) for k, v in times.items()}


def load_stack(n: int, size: int, stack: str = "isbi") -> tuple[np.ndarray, np.ndarray]:
    """n consecutive clean slices (a size x size crop at the centre) and their noisy versions,
    in [0, 1]: the first ISBI EM sections, or axial T1 MRI slices around the volume's middle
    (scaled by the volume's 99.9th percentile)."""
    if stack == "isbi":
        import tifffile
        vol = tifffile.imread(ISBI)[:n].astype(np.float32) / 255
    else:
        import nibabel as nib
        t1 = nib.load(MRI).get_fdata(dtype=np.float32)
        z0 = t1.shape[2] // 2 - n // 2
        vol = np.stack([np.rot90(t1[:, :, z]) for z in range(z0, z0 + n)])
        vol = np.clip(vol / np.percentile(t1, 99.9), 0, 1).astype(np.float32)
    if len(vol) < n:
        raise ValueError(f"the {stack} stack has {len(vol)} slices, fewer than the {n} asked for")
    y0, x0 = (vol.shape[1] - size) // 2, (vol.shape[2] - size) // 2
    clean = np.ascontiguousarray(vol[:, y0:y0 + size, x0:x0 + size])
    noisy = clean + SIGMA * np.random.default_rng(0).standard_normal(clean.shape).astype(np.float32)
    return clean, noisy


def stack_case(name: str, n: int, size: int, iterations: int, stop: str, precision: str,
               batch_size: int, warm_start: bool, stack: str = "isbi", clock=time.process_time) -> dict:
    """Fit the stack through api.run; seconds (``clock``: CPU by default), PSNR and iterations per slice."""
    clean, noisy = load_stack(n, size, stack)
    config = make_config("denoise", iterations=iterations, stop=stop, precision=precision, seed=0)
    t = clock()
    _, report = drain(run(config, noisy, ground_truth=clean, device="cpu", batch_size=batch_size,
                          warm_start=warm_start))
    seconds = clock() - t
    records = report["slices"]
    fits, at = [], 0  # (slices fitted together, their precision, iterations each was fitted), in order
    while at < len(records):
        batch = records[at]["batch"]
        fits.append((batch, records[at]["precision"], [r["fitted_iterations"] for r in records[at:at + batch]]))
        at += batch
    return {"name": name, "seconds": seconds, "slices_per_minute": 60 * n / seconds,
            "psnr": float(np.mean([s["psnr"] for s in records])),
            "psnr_input": float(np.mean([s["psnr_input"] for s in records])),
            "iterations": [s["stop_iteration"] for s in records], "fits": fits,
            "precision": report["precision"], "batch": report["batch_size"], "stack": stack, "slices": n,
            "parallel": report["parallel"], "threads": torch.get_num_threads()}


def wall_cases(stacks: list[str], n: int, size: int, iterations: int, stop: str, rounds: int,
               cores: int) -> list[dict]:
    """(b) on ``cores`` cores in wall-clock seconds: one cold slice at a time with all threads
    and with one (the better is the baseline), a cold batch and a warm-started batch (fitted
    as parallel groups), interleaved A B C D A B C D over ``rounds``, each row's best round."""
    cases = [(f"one cold slice at a time, {cores} threads", 1, False, cores),
             ("one cold slice at a time, 1 thread", 1, False, 1),
             ("batched, cold", n, False, cores), ("warm-started and batched", n, True, cores)]
    best: dict = {}
    try:
        for _ in range(rounds):
            for stack in stacks:
                for name, batch, warm, threads in cases:
                    torch.set_num_threads(threads)
                    row = stack_case(name, n, size, iterations, stop, "auto", batch, warm, stack, time.perf_counter)
                    key = (stack, name)
                    if key not in best or row["seconds"] < best[key]["seconds"]:
                        best[key] = row
                    print("wall", row, flush=True)
    finally:
        torch.set_num_threads(1)
    return list(best.values())


def iteration_costs(size: int, shapes: list[tuple[int, str]], rounds: int = 5, iterations: int = 40) -> dict:
    """CPU seconds per iteration of the fast denoising network for (slices, precision) fits at
    ``size``, interleaved A B C A B C over rounds (each its best round, the median of its
    iterations): what a (b) row's fits cost, free of the drift of a shared machine between rows
    run minutes apart. Shorter samples (12 iterations, 3 rounds) mispriced a batch of 8 by up
    to a third on this host."""
    costs: dict = {}
    for _ in range(rounds):
        for batch, precision in shapes:
            config = make_config("denoise", iterations=iterations, stop="fixed", precision=precision, seed=0)
            side = config.network.padded_size(size, size)[0]  # what api.run fits
            problem = build_problem(config, torch.rand(batch, 1, side, side, generator=torch.Generator().manual_seed(0)),
                                    seeds=[0] * batch)
            stamps = [time.process_time()]
            drain(fit(problem, config.fit, config.stop_rule(batch), device=torch.device("cpu")),
                  lambda event: stamps.append(time.process_time()))
            cost = float(np.median(np.diff(stamps)[2:]))
            costs[(batch, precision)] = min(costs.get((batch, precision), cost), cost)
    return costs


def batch_segments(fits: list) -> list[tuple[int, str, int]]:
    """(slices still being fitted, precision, iterations) of each stretch of a row's fits: a
    finished slice leaves its batch, so a batch shrinks as its slices stop."""
    segments = []
    for batch, precision, fitted in fits:
        done = 0
        for k, until in enumerate(sorted(fitted)):
            if until > done:
                segments.append((batch - k, precision, until - done))
            done = until
    return segments


def modelled_seconds(row: dict, costs: dict) -> float:
    """A (b) row's CPU seconds from its fits' iteration counts and the interleaved costs."""
    return sum(its * costs[(active, precision)] for active, precision, its in batch_segments(row["fits"]))


class _SharedNetwork(torch.nn.Module):
    """One network for a batch of codes (batch dimension, shared weights and statistics)."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.body(code))


def batch_bounds(size: int, slices: int, rounds: int, iterations: int = 12) -> dict:
    """Seconds per slice and iteration of the fast network trained on ``slices`` slices: one
    slice alone (fp32, what the engine picks), one batch of independent networks (bf16,
    channels-last), and the same slices through one shared network (bf16), whose cost is that
    of the activations alone: no batch of independent networks can get below it. CPU seconds
    with one thread, and wall seconds with two, interleaved over rounds (best round each)."""
    from napari_dip.core.scheduler import LayoutAdam
    from napari_dip.core.presets import FAST_NET
    cpu = torch.device("cpu")
    variants = {"one slice (fp32)": (1, 1, None), f"batch of {slices} networks (bf16)": (slices, slices, torch.bfloat16),
                f"{slices} slices, one shared network (bf16)": (slices, 1, torch.bfloat16)}
    out: dict = {}
    for threads, clock in ((1, time.process_time), (2, time.perf_counter)):
        torch.set_num_threads(threads)
        for _ in range(rounds):
            for name, (n, groups, amp) in variants.items():
                torch.manual_seed(0)
                net = FAST_NET.build(1, groups).to(memory_format=torch.channels_last if amp else torch.contiguous_format)
                model = net if groups == n else _SharedNetwork(net)
                side = FAST_NET.padded_size(size, size)[0]  # what api.run fits
                # a stack's slices share one code (entering a batch of networks once)
                code = torch.rand(n // groups, FAST_NET.code_channels, side, side)
                target = torch.rand(n, 1, side, side)
                opt = LayoutAdam(list(net.parameters()), 0.01, cpu)
                stamps = []
                for _ in range(iterations):
                    opt.zero_grad()
                    with torch.autocast("cpu", dtype=amp or torch.float32, enabled=amp is not None):
                        output = model(code + torch.randn_like(code) / 30)
                    ((output.float() - target) ** 2).mean().backward()
                    opt.step(0.01)
                    stamps.append(clock())
                cost = float(np.median(np.diff(stamps)[2:])) / n
                key = (name, threads)
                out[key] = min(out.get(key, cost), cost)
    torch.set_num_threads(1)
    return {"size": size, "rows": [{"variant": name, "cpu_1_thread": out[(name, 1)], "wall_2_threads": out[(name, 2)]}
                                   for name in variants]}


def warm_ceiling(n: int, size: int, iterations: int, stack: str) -> dict:
    """Per slice k >= 1: the cold PSNR after ``iterations``, and the first iteration at which a
    fit started from slice k-1's cold weights reaches it (None: not within ``iterations``)."""
    from napari_dip.arrays import Intensity
    from napari_dip.core.nets.factory import copy_problem
    config = make_config("denoise", iterations=iterations, stop="fixed", precision="fp32", seed=0)
    size = config.network.padded_size(size, size)[0]  # fitted as is: no smaller than api.run fits
    clean, noisy = load_stack(n, size, stack)
    unit = Intensity.of(noisy)  # the run's intensity units, as api.run and stack_case use

    def curve(k: int, start=None):
        settings = config.fit if start is None else replace(config.fit, lr_ramp=WARM_LR_RAMP)  # as api.run
        problem = build_problem(config, torch.from_numpy(unit.to_unit(noisy[k])[None, None]), seeds=[0],
                                ground_truth=torch.from_numpy(unit.to_unit(clean[k])[None, None]))
        if start is not None:
            copy_problem(start, 0, 1, problem.network)
        result = drain(fit(problem, settings, config.stop_rule(1), device=torch.device("cpu")))
        return result.psnr_curve[:, 0], problem.network

    rows, (_, previous) = [], curve(0)
    for k in range(1, n):
        cold, network = curve(k)
        warm, _ = curve(k, start=previous)
        reached = np.flatnonzero(warm >= cold[-1])
        rows.append({"slice": k, "cold_psnr": float(cold[-1]), "warm_best": float(warm.max()),
                     "reached": int(reached[0]) + 1 if reached.size else None})
        previous = network
    spent = iterations + sum(r["reached"] or iterations for r in rows)
    return {"stack": stack, "slices": n, "rows": rows, "throughput": n * iterations / spent}


def peak_memory(n: int, size: int, iterations: int, batch_size: int) -> float:
    """Peak resident memory in MiB that fitting n slices (a tiled crop stack) in batches adds
    to a fresh process, sampled every 5 ms above the process's memory before the run."""
    code = ("import sys; sys.argv = ['speed.py']; "
            f"sys.path.insert(0, {str(Path(__file__).parent)!r}); import speed; "
            f"print(speed.memory_child({n}, {size}, {iterations}, {batch_size}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1]) / 2 ** 20


def memory_child(n: int, size: int, iterations: int, batch_size: int) -> int:
    import threading

    import psutil
    torch.set_num_threads(1)
    clean, noisy = load_stack(min(n, 30), size)
    stack = np.resize(noisy, (n, size, size))  # a volume of n slices
    config = make_config("denoise", iterations=iterations, stop="fixed", seed=0)
    proc = psutil.Process()
    base = proc.memory_info().rss
    peak = [base]
    running = threading.Event()
    running.set()

    def sample() -> None:
        while running.is_set():
            peak[0] = max(peak[0], proc.memory_info().rss)
            time.sleep(0.005)

    thread = threading.Thread(target=sample)
    thread.start()
    done = 0
    for event in _events(run(config, stack, device="cpu", batch_size=batch_size, warm_start=False)):
        done += isinstance(event, SliceDone)
    running.clear()
    thread.join()
    assert done == n
    return peak[0] - base


def _events(gen):
    while True:
        try:
            yield next(gen)
        except StopIteration:
            return


def write_table(path: Path, a: dict, b: list[dict], wall: list[dict], ceilings: list[dict],
                bounds: dict | None, c: list[tuple[str, float]], args) -> str:
    base_a = a["fp32 eager"]
    lines = [
        "## Results",
        "",
        f"Machine: {torch.get_num_threads()} thread(s) of {_cpu_name()}; bf16 hardware: "
        f"{cpu_has_fast_bf16()}; torch {torch.__version__}. Times are CPU seconds of this process "
        f"with one thread (robust to other load on a shared machine); (a) interleaves A B A B over "
        f"{args.repeats} rounds and keeps each variant's best.",
        "",
        f"### (a) Paper network, one iteration at {args.size_a} x {args.size_a} grey",
        "",
        "| settings | CPU s / iteration | speed-up |",
        "|---|---|---|",
    ]
    for name, sec in a.items():
        lines.append(f"| {name} | {sec:.3f} | {base_a / sec:.2f}x |")
    for stack, n in dict.fromkeys((r["stack"], r["slices"]) for r in b):
        rows = [r for r in b if (r["stack"], r["slices"]) == (stack, n)]
        base_b = rows[0]
        lines += [
            "",
            f"### (b) {n} {STACK_NAMES[stack]}, {args.size_b} x {args.size_b}, sigma 25/255, "
            f"fast preset, stop '{args.stop}', {args.iterations} iterations (cold)",
            "",
            "| fit | batch | CPU s | slices / CPU min | throughput | throughput (interleaved costs) "
            "| mean PSNR (dB) | dPSNR | stop iterations |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(f"| {r['name']} | {r['batch']} | {r['seconds']:.1f} | {r['slices_per_minute']:.2f} | "
                         f"{r['slices_per_minute'] / base_b['slices_per_minute']:.2f}x | "
                         f"{base_b['modelled_seconds'] / r['modelled_seconds']:.2f}x | {r['psnr']:.2f} | "
                         f"{r['psnr'] - base_b['psnr']:+.2f} | {', '.join(map(str, r['iterations']))} |")
        lines += ["", f"Noisy input: {base_b['psnr_input']:.2f} dB. Throughput (interleaved costs): the "
                      "rows' iteration counts priced at per-iteration costs measured side by side "
                      "(A B C A B C), which the drift of a shared machine between rows does not skew."]
    for stack in dict.fromkeys(r["stack"] for r in wall):
        rows = [r for r in wall if r["stack"] == stack]
        base = min((r for r in rows if r["batch"] == 1), key=lambda r: r["seconds"])
        lines += [
            "",
            f"### (b) {rows[0]['slices']} {STACK_NAMES[stack]} on all {rows[0]['threads']} cores, wall clock "
            f"(same fits as above; best of {args.wall_rounds} interleaved rounds)",
            "",
            "| fit | batch | parallel groups x torch threads | wall s | slices / min | throughput "
            "| mean PSNR (dB) | dPSNR | stop iterations |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in rows:
            split = f"{r['parallel']} x {max(1, r['threads'] // r['parallel'])}"
            lines.append(f"| {r['name']} | {r['batch']} | {split} | {r['seconds']:.1f} | "
                         f"{r['slices_per_minute']:.2f} | {r['slices_per_minute'] / base['slices_per_minute']:.2f}x | "
                         f"{r['psnr']:.2f} | {r['psnr'] - base['psnr']:+.2f} | {', '.join(map(str, r['iterations']))} |")
        lines += ["", f"Throughput against the faster way of fitting one cold slice at a time "
                      f"({base['name']})."]
    for ceiling in ceilings:
        rows = ceiling["rows"]
        lines += ["", f"### (b) Warm-start ceiling, {STACK_NAMES[ceiling['stack']]} (oracle stop, fp32)", "",
                  "Slice k fitted from slice k-1's cold weights: the first iteration at which its output "
                  "is as good as its own cold fit after the cold count (-: not within that count).", "",
                  "| slice | cold PSNR | iterations to reach it | best warm PSNR |", "|---|---|---|---|"]
        lines += [f"| {r['slice']} | {r['cold_psnr']:.2f} | {r['reached'] or '-'} | {r['warm_best']:.2f} |"
                  for r in rows]
        lines += ["", f"A warm chain stopped by this oracle (never-reached slices at the cold count): "
                      f"**{ceiling['throughput']:.2f}x** the throughput of cold fits, before batching."]
    if bounds:
        rows = bounds["rows"]
        lines += ["", f"### (b) What a batch can save at most ({bounds['size']} x {bounds['size']}, fast network)", "",
                  "Seconds per slice and iteration, and the throughput against one slice alone. A shared "
                  "network pays for the activations only (its weights are shared), so no batch of "
                  "independent networks can be cheaper per slice.", "",
                  "| fit | CPU ms, 1 thread | throughput | wall ms, 2 threads | throughput |", "|---|---|---|---|---|"]
        lines += [f"| {r['variant']} | {1e3 * r['cpu_1_thread']:.1f} | {rows[0]['cpu_1_thread'] / r['cpu_1_thread']:.2f}x "
                  f"| {1e3 * r['wall_2_threads']:.1f} | {rows[0]['wall_2_threads'] / r['wall_2_threads']:.2f}x |"
                  for r in rows]
    lines += ["",
              f"### (c) Peak memory a fit adds to a fresh process ({args.size_b} x {args.size_b} slices, "
              f"fast preset, RSS sampled every 5 ms)", "",
              "| run | peak added memory (MiB) |", "|---|---|"]
    lines += [f"| {name} | {mib:.0f} |" for name, mib in c]
    table = "\n".join(lines) + "\n"
    text = path.read_text() if path.exists() else ""
    head = text.split("## Results")[0] if "## Results" in text else text
    path.write_text(head + table)
    return table


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-a", type=int, default=256)
    p.add_argument("--iterations-a", type=int, default=4)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--slices", type=int, default=8)
    p.add_argument("--size-b", type=int, default=64)
    p.add_argument("--iterations", type=int, default=500,
                   help="iterations of a cold fit (default 500: the best fixed count at 64 x 64)")
    p.add_argument("--stop", default="fixed", choices=("auto", "fixed"))
    p.add_argument("--stacks", nargs="+", default=["isbi", "mri"], choices=tuple(STACK_NAMES))
    p.add_argument("--long-slices", type=int, default=0, metavar="N",
                   help="also compare a cold fit and a warm-started batched fit on N ISBI slices "
                        "(batches of --slices)")
    p.add_argument("--ceiling", action="store_true",
                   help="also measure the warm-start ceiling on each stack (oracle stop; about 6 CPU minutes each)")
    p.add_argument("--bounds", action="store_true",
                   help="also measure what a batch can save at most (one shared network; about 2 minutes)")
    p.add_argument("--wall-rounds", type=int, default=2, metavar="N",
                   help="rounds of the wall-clock (b) rows on all cores (0: skip them)")
    p.add_argument("--volume", type=int, default=200, help="slices of the volume in (c)")
    p.add_argument("--out", default=str(ROOT / "docs" / "speed.md"))
    p.add_argument("--json", default=None, help="also write the raw numbers here")
    p.add_argument("--reuse", default=None, help="take (a) and (b) from this --json file of an earlier run "
                                                 "with the same options; measure (c) (and --bounds) only")
    args = p.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(1)
    n, s, its, stop = args.slices, args.size_b, args.iterations, args.stop
    if args.reuse:
        earlier = json.loads(Path(args.reuse).read_text())
        a, b, ceilings, bounds = earlier["a"], earlier["b"], earlier.get("ceilings", []), earlier.get("bounds")
        wall = earlier.get("wall", [])
    else:
        a = part_a(args.size_a, args.iterations_a, args.repeats)
        print("a", a, flush=True)
        b = []
        for stack in args.stacks:
            for name, batch, warm in (("one cold slice at a time", 1, False), ("batched, cold", n, False),
                                      ("warm-started, one at a time", 1, True),
                                      ("warm-started and batched", n, True)):
                b.append(stack_case(name, n, s, its, stop, "auto", batch, warm, stack))
                print("b", b[-1], flush=True)
        if args.long_slices:
            for name, batch, warm in (("one cold slice at a time", 1, False), ("warm-started and batched", n, True)):
                b.append(stack_case(name, args.long_slices, s, its, stop, "auto", batch, warm, "isbi"))
                print("b", b[-1], flush=True)
        shapes = sorted({(active, precision) for r in b for active, precision, _ in batch_segments(r["fits"])})
        costs = iteration_costs(s, shapes)
        for r in b:
            r["modelled_seconds"] = modelled_seconds(r, costs)
        print("costs", costs, flush=True)
        wall = wall_cases(args.stacks, n, s, its, stop, args.wall_rounds, cores) if args.wall_rounds else []
        ceilings = [warm_ceiling(n, s, its, stack) for stack in args.stacks] if args.ceiling else []
        print("ceilings", ceilings, flush=True)
        bounds = None
    if args.bounds:
        bounds = batch_bounds(s, n, args.repeats)
        print("bounds", bounds, flush=True)
    c = [(f"{n} slices, one at a time", peak_memory(n, s, 3, 1)),
         (f"{n} slices, batch {n}", peak_memory(n, s, 3, n)),
         (f"{args.volume} slices, batch {n}", peak_memory(args.volume, s, 3, n))]
    print("c", c, flush=True)
    table = write_table(Path(args.out), a, b, wall, ceilings, bounds, c, args)
    if args.json:
        Path(args.json).write_text(json.dumps({"a": a, "b": b, "wall": wall, "ceilings": ceilings, "bounds": bounds,
                                               "c": c}, indent=1))
    print(table)


if __name__ == "__main__":
    main()
