"""The only module that imports :mod:`torch.distributed`. A no-op in one process.

(FG)²U's directions are independent, so they shard across ranks: each rank draws its own
directions from a rank-specific seed, computes its partial sum, and one all-reduce adds them up.

What each method does when a process group is initialised:

* ``fg2u`` and ``fg2u-zo`` (``distributed="auto"``, the default): the ``b`` directions are split
  over the ranks (rank r draws ``b // world + (r < b % world)`` from seed ``seed + 1_000_003 r``)
  and one all-reduce of an (N+1)-vector gives every rank the same estimate — b directions in the
  time of about b / world. ``distributed="off"``: the group is ignored, every rank computes all
  b directions from ``seed`` by itself (e.g. when each rank solves a different problem).
* every other method (``rmd``, ``trgu``, ``fmd``, ``greedy``, ``t1t2``, ``fo``, ``fomaml``,
  ``cg``, ``neumann``, ``hessian-free``) ignores the group: each rank computes the full estimate
  on its own inputs, with no communication (identical on every rank when the inputs are).
  Data-parallel averaging over ranks of those is up to the caller (``all_reduce_sum``).

torchrun recipe (one process per GPU, or ``--nproc_per_node=k`` CPU processes with gloo)::

    # fg2u_ddp.py
    import torch, torch.distributed as dist, metagrad as mg
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if torch.cuda.is_available():
        torch.cuda.set_device(dist.get_rank() % torch.cuda.device_count())
    problem, alpha = build_problem()          # the same problem and alpha on every rank
    res = mg.hypergrad(problem, alpha, "fg2u", b=64, seed=step)   # 64 directions in all
    # res.grad is identical on every rank; update alpha the same way everywhere
    dist.destroy_process_group()

    $ torchrun --standalone --nproc_per_node=4 fg2u_ddp.py

``seed`` must be the same on every rank (the ranks' directions differ through the rank offset);
``b`` is the global number of directions. A runnable version is ``examples/torchrun_fg2u.py``,
which ``tests/test_distributed_options.py`` runs under ``torch.distributed.run`` on 2 CPU ranks.
"""
from __future__ import annotations

import os
import socket
import tempfile
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

__all__ = ["rank_and_world", "all_reduce_sum", "launch"]


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)``; ``(0, 1)`` when no process group is initialised."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum ``t`` over all ranks (in place, returned); identity in one process."""
    if rank_and_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, fn: Callable, nprocs: int, port: int, backend: str, out_dir: str,
            threads: int | None, args: tuple) -> None:
    if threads:
        torch.set_num_threads(threads)
    dist.init_process_group(backend, init_method=f"tcp://127.0.0.1:{port}",
                            rank=rank, world_size=nprocs)
    try:
        result = fn(*args)
        torch.save(result, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def launch(fn: Callable, nprocs: int, *args: Any, backend: str = "gloo",
           threads_per_process: int | None = None) -> list[Any]:
    """Run ``fn(*args)`` in ``nprocs`` fresh processes joined in a process group on
    127.0.0.1; return each rank's result (in rank order). ``fn`` must be importable
    (a module-level function). Used by the tests and the benchmark."""
    with tempfile.TemporaryDirectory() as out_dir:
        mp.start_processes(_worker, args=(fn, nprocs, _free_port(), backend, out_dir,
                                          threads_per_process, args),
                           nprocs=nprocs, join=True, start_method="spawn")
        return [torch.load(os.path.join(out_dir, f"rank{r}.pt"), weights_only=False)
                for r in range(nprocs)]
