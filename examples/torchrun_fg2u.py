"""(FG)²U on every rank of a torchrun job; each rank saves its estimate.

    torchrun --standalone --nproc_per_node=2 examples/torchrun_fg2u.py OUT_DIR [B] [SEED]

Every rank builds the same problem; ``mg.hypergrad(..., "fg2u", b=B)`` splits the B directions
over the ranks and all-reduces the estimate, so every rank ends with the same hypergradient.
"""
from __future__ import annotations

import os
import sys

import torch
import torch.distributed as dist

import metagrad as mg
from metagrad.tasks import families


def main(out_dir: str, b: int = 6, seed: int = 0) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank()
    device = f"cuda:{rank % torch.cuda.device_count()}" if torch.cuda.is_available() else "cpu"
    problem, alpha = families.hyper_cleaning(n_train=10, n_val=12, d=3, C=3, T=12, device=device)
    res = mg.hypergrad(problem, alpha, "fg2u", b=b, seed=seed)
    torch.save({"rank": rank, "world": dist.get_world_size(), "grad": res.grad, "loss": res.loss,
                "jvps": res.cost.jvps}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], *(int(x) for x in sys.argv[2:]))
