"""The only module that imports :mod:`torch.distributed`. A no-op in one process.

(FG)²U's directions are independent, so they shard across ranks: each rank draws its own
directions from a rank-specific seed, computes its partial sum, and one all-reduce adds them up.
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
