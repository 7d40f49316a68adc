"""Which problems of a fit are stepped, packed in which networks, on which threads.

:func:`napari_dip.core.fit.fit` is the loop; a :class:`Scheduler` does the bookkeeping
behind it: the problems packed into groups (one packed network and :class:`LayoutAdam` each),
groups stepped at the same time in a thread pool, and, when some problems are done, the rest
regrouped into smaller networks that carry their weights, Adam moments and fallback weights
over, so each problem follows the path it follows alone. The loop sees every tensor over all
G problems; finished problems keep their last values.
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn

from .losses import Loss
from .nets.factory import move_problems


class LayoutAdam:
    """Adam (fused on CPU and CUDA) stepping on contiguous views of the parameters.

    A channels-last 4D weight is one contiguous block in (O, kH, kW, I) order; handed to Adam
    as such, it is updated in place instead of being copied to the default layout and back
    every step (a sixth of a batched bfloat16 iteration on small images).
    """

    def __init__(self, params: Sequence[torch.Tensor], lr: float, device: torch.device):
        self.params = list(params)
        self.views = [_contiguous_view(p.detach()) for p in self.params]
        fused = {"fused": True} if device.type in ("cpu", "cuda") else {}
        self.optimizer = torch.optim.Adam(self.views, lr=lr, **fused)
        self.saved: dict[torch.Tensor, dict[str, torch.Tensor]] = {}  # moments at the last save()

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None

    def step(self, lr: float) -> None:
        for p, v in zip(self.params, self.views):
            v.grad = None if p.grad is None else _contiguous_view(p.grad, like=p)
        self.optimizer.param_groups[0]["lr"] = lr
        self.optimizer.step()

    @torch.no_grad()
    def save(self, keep: torch.Tensor, n: int) -> None:
        """Remember the Adam moments of the problems ``keep`` (bool on the device, one per
        problem of ``n``), for :meth:`fall_back` (the caller saves the weights)."""
        for view in self.views:
            state = self.optimizer.state.get(view)
            if not state:
                continue
            saved = self.saved.setdefault(view, {})
            for key in MOMENTS:
                if key not in saved:  # zero until saved, as fall_back() assumes
                    saved[key] = torch.zeros_like(state[key])
            copy_rows([saved[key] for key in MOMENTS], [state[key] for key in MOMENTS], keep, n)

    @torch.no_grad()
    def fall_back(self, keep: torch.Tensor, n: int) -> None:
        """Give the problems ``keep`` (bool, one per problem of ``n``) the moments of the last
        :meth:`save` (zero before the first), so momentum does not carry them on."""
        for view in self.views:
            state = self.optimizer.state.get(view)
            if not state:
                continue
            saved = self.saved.get(view)
            for key in MOMENTS:
                moment = state[key].unflatten(0, (n, -1))
                moment[keep] = saved[key].unflatten(0, (n, -1))[keep] if saved else 0

    @classmethod
    def gather(cls, params: Sequence[torch.Tensor], k: int, parts) -> "LayoutAdam":
        """Adam for ``params`` packing ``k`` problems, carrying their moments, saved moments and
        step counts over from ``parts``: (optimiser, problems it packs, their rows there, their
        rows here)."""
        first = parts[0][0]
        new = cls(params, first.optimizer.param_groups[0]["lr"], params[0].device)
        for i, view in enumerate(new.views):
            for states, into in ((lambda opt: opt.optimizer.state, new.optimizer.state),
                                 (lambda opt: opt.saved, new.saved)):
                old = states(first).get(first.views[i])
                if not old:
                    continue
                state = {}
                for key, value in old.items():
                    if value.ndim == 0:  # the step count, the same for every problem of a fit
                        state[key] = value.clone()
                        continue
                    state[key] = view.new_empty(view.shape)
                    for opt, n, src, dst in parts:
                        moment = states(opt)[opt.views[i]][key]
                        state[key].unflatten(0, (k, -1))[dst] = moment.unflatten(0, (n, -1))[src]
                into[view] = state
        return new


MOMENTS = ("exp_avg", "exp_avg_sq")  # Adam's per-weight state (without amsgrad)


def _contiguous_view(t: torch.Tensor, like: torch.Tensor | None = None) -> torch.Tensor:
    """``t`` as (O, kH, kW, I) if ``like`` (default: ``t``) is a channels-last 4D tensor."""
    like = t if like is None else like
    if like.ndim == 4 and not like.is_contiguous() and like.is_contiguous(memory_format=torch.channels_last):
        return t.permute(0, 2, 3, 1)
    return t


def rows(tensors: Sequence[torch.Tensor], n: int) -> list[torch.Tensor]:
    """Views (G, ...) of packed tensors: problem g owns the g-th block of dim 0."""
    return [t.unflatten(0, (n, -1)) for t in tensors]


def per_row(flags: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``flags`` (G,) shaped to broadcast over ``like`` (G, ...), for ``torch.where``."""
    return flags.view(-1, *[1] * (like.ndim - 1))


def copy_rows(into: Sequence[torch.Tensor], source: Sequence[torch.Tensor], flags: torch.Tensor, n: int) -> None:
    """Copy the rows of the problems ``flags`` (bool (n,) on the device) of each packed tensor
    of ``source`` into the same rows of ``into``, on the device (no boolean indexing, whose
    size needs a read)."""
    for mine, now in zip(rows(into, n), rows(source, n)):
        mine.copy_(torch.where(per_row(flags, now), now, mine))


def parallel_groups(setting: int, device: torch.device, n: int) -> int:
    """How many groups of a batch of ``n`` problems to fit at the same time (see
    :class:`napari_dip.core.fit.FitSettings`, ``parallel``)."""
    if setting:
        return max(1, min(setting, n))
    return max(1, min(torch.get_num_threads(), n)) if device.type == "cpu" else 1


def _generators(seeds: Sequence[int], device: torch.device) -> list[torch.Generator]:
    gens = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s) + 1)  # distinct from the weight-initialisation stream
        gens.append(g)
    return gens


@dataclass
class Group:
    """Problems fitted together: a packed network and their rows (``index``: their numbers)."""

    index: torch.Tensor  # (k,) long, positions among the problem's G
    net: nn.Module
    params: list[torch.Tensor]
    opt: LayoutAdam
    good: list[torch.Tensor]  # weights a loss jump falls back to
    code: torch.Tensor
    y: torch.Tensor
    op: Callable[[torch.Tensor], torch.Tensor]
    loss: Loss
    gens: list[torch.Generator]
    shared: bool = False  # one code and noise stream for all: the code enters the network once

    def __post_init__(self):
        self.at = self.index.to(self.code.device)  # the same positions, on the device
        self.members = self.index.tolist()  # and on the host, for decisions made there
        if hasattr(self.net, "draw_from"):  # dropout masks from the problems' own streams
            self.net.draw_from(self.gens)

    @property
    def n(self) -> int:
        return len(self.index)

    @torch.no_grad()
    def snapshot(self, keep: torch.Tensor) -> None:
        """Copy the weights and Adam moments of the problems ``keep`` (bool on the device) to
        what a loss jump falls back to; on the device, nothing read back."""
        copy_rows(self.good, [p.detach() for p in self.params], keep, self.n)
        self.opt.save(keep, self.n)

    @torch.no_grad()
    def fall_back(self, keep: list[bool]) -> None:
        """Give the problems ``keep`` their last good weights and Adam moments (at most
        SNAPSHOT_EVERY iterations old): their loss jumped, so their last step is undone. The
        optimiser still counts the step, so problems fitted in one batch follow the paths
        they follow alone."""
        flags = torch.tensor(keep, device=self.code.device)
        copy_rows([p.detach() for p in self.params], self.good, flags, self.n)
        self.opt.fall_back(flags, self.n)


def _on(part, device: torch.device):
    """An operator or a loss on ``device`` (a plain callable stays as it is)."""
    return part.to(device) if hasattr(part, "to") else part


def _select(part, index: torch.Tensor):
    """An operator's or a loss's part for the problems ``index``; a plain callable holds
    nothing per problem."""
    return part.rows(index) if hasattr(part, "rows") else part


class Scheduler:
    """The groups of a fit's G problems, stepped together and regrouped as problems finish.

    ``problem`` is a :class:`napari_dip.core.fit.Problem`; its network is moved to ``device``
    in ``layout`` and ends, after :meth:`store`, with every problem's last weights. With
    ``problem.make_network`` given, the problems are fitted in ``parallel`` groups at the same
    time (see :func:`parallel_groups`) and :meth:`retire` drops finished ones; without it, all
    G stay in the one network to the end. Step it inside a ``with`` block: the parallel
    groups' thread pool lives for the block.
    """

    def __init__(self, problem, *, lr: float, parallel: int, device: torch.device, layout):
        n = self.n = problem.n
        self.network = problem.network.to(device, memory_format=layout).train()
        params = [p for p in self.network.parameters() if p.requires_grad]
        shared = n > 1 and getattr(self.network, "shares_code", False) and problem.shared_code
        self.whole = Group(
            index=torch.arange(n), net=self.network, params=params,
            opt=LayoutAdam(params, lr, device), good=[p.detach().clone() for p in params],
            code=problem.code.to(device), y=problem.observed.to(device),
            op=_on(problem.operator, device), loss=_on(problem.loss, device),
            gens=_generators(problem.seeds, device), shared=shared)
        self.make, self.layout = problem.make_network, layout
        self.parallel = parallel_groups(parallel, device, n) if self.make is not None else 1
        self.groups = [self.whole]
        if self.parallel > 1:
            self.groups = self._regroup(self.whole.index, self.parallel)
        self.left, self.at = self.whole.index, self.whole.at  # problems being fitted (host, device)
        self.fitted = torch.zeros(n, dtype=torch.long)  # iterations each problem was stepped
        self.restarts = 0
        self._pool = None

    def __enter__(self) -> "Scheduler":
        self._threads = torch.get_num_threads()
        if self.parallel > 1:  # each group's thread gets an equal share of the CPU's threads
            self._pool = ThreadPoolExecutor(self.parallel, initializer=torch.set_num_threads,
                                            initargs=(max(1, self._threads // self.parallel),))
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None
            torch.set_num_threads(self._threads)  # the pool's threads set the process-wide default

    @property
    def full(self) -> bool:
        """True while every problem is still being fitted in one network."""
        return self.groups[0].n == self.n

    def step(self, step: Callable, out: torch.Tensor | None, loss: torch.Tensor | None):
        """Step every group: ``step(group, its previous outputs, its previous losses)``
        returns (outputs, losses, which jumped) for the group's problems. Returns the outputs
        (G, C, H, W), losses (G,) and jump flags (G,) of all G problems, on the device,
        finished ones keeping theirs (``out``, ``loss``: the last iteration's, None at the
        first)."""
        full = self.full
        for g in self.groups:
            self.fitted[g.index] += 1

        def one(g: Group):
            if out is None:
                return step(g, None, None)
            return step(g, out if full else out[g.at], loss if full else loss[g.at])

        steps = [one(self.groups[0])] if len(self.groups) == 1 else list(self._pool.map(one, self.groups))
        if full:
            return steps[0]
        first_out, first_loss, first_jumped = steps[0]
        out = first_out.new_empty((self.n, *first_out.shape[1:])) if out is None else out.clone()
        loss = first_loss.new_empty(self.n) if loss is None else loss.clone()
        jumped = first_jumped.new_zeros(self.n)
        for g, (o, l, j) in zip(self.groups, steps):
            out[g.at], loss[g.at], jumped[g.at] = o, l, j
        return out, loss, jumped

    def fall_back(self, jumped: list[bool]) -> None:
        """Undo the last step of the problems whose loss jumped (``jumped``: G flags read back
        by the loop) and count them as restarts."""
        if not any(jumped):
            return
        self.restarts += sum(jumped)
        for g in self.groups:
            keep = [jumped[i] for i in g.members]
            if any(keep):
                g.fall_back(keep)

    def average(self, mean: torch.Tensor | None, out: torch.Tensor, decay: float) -> torch.Tensor:
        """The running average ``mean`` of the outputs moved towards ``out`` by ``1 - decay``
        for the problems being fitted (``out`` itself at the first iteration)."""
        if mean is None:
            return out.clone()
        if self.full:
            return mean.mul_(decay).add_(out, alpha=1 - decay)
        return mean.index_copy_(0, self.at, mean[self.at].mul_(decay).add_(out[self.at], alpha=1 - decay))

    def measure(self, metric: Callable, before: torch.Tensor | None, *tensors: torch.Tensor) -> torch.Tensor:
        """``metric`` of ``tensors`` (G, ...) for the problems being fitted; finished problems
        keep their values in ``before``."""
        if self.full:
            return metric(*tensors)
        now = metric(*(t[self.at] for t in tensors))
        return (now.new_empty(self.n) if before is None else before).index_copy(0, self.at, now)

    def retire(self, done: list[bool]) -> None:
        """Stop fitting the problems ``done`` (G flags): the rest go on in smaller groups."""
        left = [i for g in self.groups for i in g.members]  # the problems being fitted, in order
        if self.make is None or not any(done[i] for i in left):
            return
        self.store()
        self.left = torch.tensor([i for i in left if not done[i]], dtype=torch.long)
        self.groups = self._regroup(self.left, min(self.parallel, len(self.left)))
        self.at = self.left.to(self.at.device)

    def store(self) -> None:
        """Write every group's weights into their problems' places in the fit's network."""
        for g in self.groups:
            if g.net is not self.network:
                move_problems(g.net, g.n, self.network, [(k, int(i)) for k, i in enumerate(g.index)])

    def _regroup(self, index: torch.Tensor, parts: int) -> list[Group]:
        """The problems ``index`` (positions among the fit's G) split into ``parts`` groups of
        near-equal size, each a packed network that carries its problems' weights, Adam
        moments and fallback weights over from the current groups; codes, observations,
        operator rows and noise streams come from the group of all G problems."""
        groups, whole = self.groups, self.whole
        owner = {int(i): (g, k) for g in groups for k, i in enumerate(g.index.tolist())}
        device = whole.code.device
        new = []
        for chunk in torch.tensor_split(index, parts):
            k = len(chunk)
            with torch.device("meta"):  # no initialisation: every weight is loaded below
                net = self.make(k)
            net = net.to_empty(device=device).to(memory_format=self.layout).train()
            params = [p for p in net.parameters() if p.requires_grad]
            good = [torch.empty_like(p) for p in params]
            sources = []  # (group, its rows, rows here)
            for g in groups:
                pairs = [(owner[i][1], t) for t, i in enumerate(chunk.tolist()) if owner[i][0] is g]
                if pairs:
                    move_problems(g.net, g.n, net, pairs)
                    sources.append((g, torch.tensor([s for s, _ in pairs], device=device),
                                    torch.tensor([t for _, t in pairs], device=device)))
            with torch.no_grad():
                for g, src, dst in sources:
                    for mine, old in zip(rows(good, k), rows(g.good, g.n)):
                        mine[dst] = old[src]
            at = chunk.to(device)
            new.append(Group(
                index=chunk, net=net, params=params, good=good,
                opt=LayoutAdam.gather(params, k, [(g.opt, g.n, src, dst) for g, src, dst in sources]),
                code=whole.code[at], y=whole.y[at],
                op=_select(whole.op, at), loss=_select(whole.loss, at),
                gens=[whole.gens[i] for i in chunk.tolist()], shared=whole.shared))
        return new
