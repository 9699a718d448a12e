"""The cost record every estimator returns, and how it is measured.

Counts are in units of the *transition* Φ_t (one inner optimiser step):

* ``inner_steps`` — transition evaluations (plain, taped or tangent-carrying), recomputations included;
* ``jvps`` — forward-mode products through a transition, counted per direction;
* ``vjps`` — reverse-mode products through a transition;
* ``hvps`` — Hessian-vector (and mixed second-derivative) products of ``L_train`` at ``w_T``;
* ``outer_grads`` — gradients of ``L_val``; ``solver_calls`` — black-box inner solves.

Peak memory: on CUDA, ``torch.cuda.max_memory_allocated`` above the allocation at entry
(``memory_method='cuda-allocator'``). On CPU, PyTorch keeps no allocator statistics, so
metagrad counts bytes of *tensor storages created during the call and still alive*, with a
``TorchDispatchMode`` that sees every ATen op (``memory_method='live-tensors'``): the peak of that
sum is what the call needed beyond its inputs. It is exact for tensors (not for Python objects),
and it slows small ops down, so wall times are measured in separate runs (the benchmark does so).
"""
from __future__ import annotations

import time
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, asdict

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

__all__ = ["Cost", "measure", "LiveTensorTracker"]


@dataclass
class Cost:
    inner_steps: int = 0
    jvps: int = 0
    vjps: int = 0
    hvps: int = 0
    outer_grads: int = 0
    solver_calls: int = 0
    wall_time_s: float = 0.0
    peak_memory_bytes: int | None = None
    memory_method: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)


class LiveTensorTracker(TorchDispatchMode):
    """Peak bytes of tensor storages allocated inside the context and alive at once.

    Only storages an operation *creates* count: an output that shares its storage with one of
    the operation's inputs (``detach()``, views, in-place and ``out=`` operations) allocated
    nothing and is skipped, so a view of a tensor that existed before the context costs 0.
    What it cannot see: allocations inside a kernel that do not outlive it (workspaces) and
    the scalar tensors Python numbers are wrapped in — a few bytes
    (``tests/test_cost.py`` checks it against the profiler's allocator events)."""

    def __init__(self):
        super().__init__()
        self._live: dict[int, int] = {}
        self.current = 0
        self.peak = 0

    @staticmethod
    def _storage(t):
        """``(storage, data_ptr)``, or None for non-tensors and functorch wrappers (no storage)."""
        if not isinstance(t, torch.Tensor):
            return None
        try:
            storage = t.untyped_storage()
            return storage, storage.data_ptr()
        except (RuntimeError, NotImplementedError):
            return None

    def _track(self, storage, key: int) -> None:
        nbytes = storage.nbytes()
        if nbytes == 0 or key in self._live:
            return
        self._live[key] = nbytes
        self.current += nbytes
        self.peak = max(self.peak, self.current)
        weakref.finalize(storage, self._release, key)

    def _release(self, key: int) -> None:
        self.current -= self._live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = {s[1] for s in map(self._storage, tree_leaves((args, kwargs))) if s is not None}
        for t in tree_leaves(out):
            s = self._storage(t)
            if s is not None and s[1] not in inputs:
                self._track(*s)
        return out


@contextmanager
def measure(cost: Cost, device: torch.device, track_memory: bool | None = None):
    """Fill ``cost.wall_time_s`` and, when asked (default: on CUDA only), the peak memory."""
    cuda = device.type == "cuda"
    track = cuda if track_memory is None else track_memory
    tracker = None
    if cuda:
        torch.cuda.synchronize(device)
        if track:
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
    elif track:
        tracker = LiveTensorTracker()
    start = time.perf_counter()
    if tracker is not None:
        with tracker:
            yield cost
    else:
        yield cost
    if cuda:
        torch.cuda.synchronize(device)
    cost.wall_time_s = time.perf_counter() - start
    if track and cuda:
        cost.peak_memory_bytes = torch.cuda.max_memory_allocated(device) - base
        cost.memory_method = "cuda-allocator"
    elif tracker is not None:
        cost.peak_memory_bytes = tracker.peak
        cost.memory_method = "live-tensors"
