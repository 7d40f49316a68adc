"""What every slot of the engine shares: a registry of named implementations, and
per-problem data that follows its problems when a fit splits or shrinks a batch.

The slots are the forward operators (:mod:`.operators`), the losses (:mod:`.losses`), the
networks (:mod:`.nets`) and the tasks (:mod:`.task`); each has one :class:`Registry`.
"""
from __future__ import annotations

import copy
from typing import Callable, Generic, Iterator, TypeVar

import torch

T = TypeVar("T")


class Registry(Generic[T]):
    """Named implementations of one slot (``kind``: what the names are called in errors).

    >>> LOSSES = Registry("loss")
    >>> @LOSSES.register("mse")
    ... class MSE: ...
    >>> LOSSES.make("mse")            # doctest: +ELLIPSIS
    <...MSE object at ...>
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, Callable[..., T]] = {}

    def register(self, name: str, factory: Callable[..., T] | None = None):
        """Register ``factory`` (a class or a function building an implementation) as
        ``name``; used bare it is a decorator. A name can be registered once."""
        def add(f: Callable[..., T]) -> Callable[..., T]:
            if name in self._entries:
                raise ValueError(f"a {self.kind} named {name!r} is already registered")
            self._entries[name] = f
            return f
        return add if factory is None else add(factory)

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered as ``name``; a ValueError naming the choices otherwise."""
        if not isinstance(name, str) or name not in self._entries:
            raise ValueError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}")
        return self._entries[name]

    def make(self, name: str, **params) -> T:
        """Build the implementation ``name`` with ``params``."""
        return self.get(name)(**params)

    def names(self) -> tuple[str, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)


class PerProblem:
    """Mixin for slot implementations holding tensors with one row per problem.

    A subclass lists the attributes that hold such tensors in ``per_problem``: each is
    (G, ...) with one row per problem, or (1, ...) shared by all of them. :meth:`rows` gives
    the same implementation for a subset of the problems (what a fit does when problems
    finish or a batch is split into parallel groups) and :meth:`to` moves the tensors to a
    device. Implementations without per-problem tensors inherit both as no-ops.
    """

    per_problem: tuple[str, ...] = ()

    def rows(self, index: torch.Tensor):
        """This implementation for problems ``index`` (positions among its G); itself when
        it holds nothing per problem or only shared (1, ...) tensors."""
        own = [name for name in self.per_problem if getattr(self, name).shape[0] != 1]
        if not own:
            return self
        selected = copy.copy(self)
        for name in own:
            tensor = getattr(self, name)
            setattr(selected, name, tensor[index.to(tensor.device)])
        return selected

    def to(self, device: torch.device | str):
        """Move the per-problem tensors to ``device`` (in place); returns self."""
        for name in self.per_problem:
            setattr(self, name, getattr(self, name).to(device))
        return self
