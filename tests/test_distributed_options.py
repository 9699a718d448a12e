"""The ``distributed=`` option of fg2u / fg2u-zo, what the other methods do under a process
group, and the documented torchrun recipe (examples/torchrun_fg2u.py) on 2 gloo CPU ranks."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import metagrad as mg
from metagrad._tree import flatten

import _dist_worker
from _helpers import small_family

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available in this build")

ROOT = Path(__file__).resolve().parents[1]


def _rel(a, b) -> float:
    return float((flatten(a) - flatten(b)).norm() / flatten(b).norm())


def test_distributed_option_in_one_process():
    problem, alpha = small_family("quadratic")
    on = mg.hypergrad(problem, alpha, "fg2u", b=3, seed=1)
    off = mg.hypergrad(problem, alpha, "fg2u", b=3, seed=1, distributed="off")
    assert _rel(on.grad, off.grad) == 0.0
    with pytest.raises(mg.ConfigError, match="distributed must be 'auto'"):
        mg.hypergrad(problem, alpha, "fg2u", distributed="ddp")
    with pytest.raises(mg.ConfigError, match="distributed must be 'auto'"):
        mg.hypergrad(problem, alpha, "fg2u-zo", distributed=True)


CASES = [
    ("hyper_cleaning", "fg2u", {"b": 3, "seed": 7, "distributed": "off"}),
    ("hyper_cleaning", "fg2u-zo", {"b": 2, "seed": 5, "mu": 1e-3, "distributed": "off"}),
    ("hyper_cleaning", "rmd", {}),
    ("mlp_momentum", "greedy", {"gamma": 0.8}),
]


@pytest.mark.slow
def test_off_and_other_methods_ignore_the_process_group():
    """Under 2 processes, distributed='off' and every non-(FG)²U method compute on each rank
    exactly what one process computes (no sharding, no communication)."""
    results = mg.distributed.launch(_dist_worker.hypergrads, 2, CASES, threads_per_process=1)
    for i, (family, method, options) in enumerate(CASES):
        problem, alpha = small_family(family)
        ref = mg.hypergrad(problem, alpha, method, **options)
        for r in range(2):
            x = results[r][i]
            assert x["world"] == 2
            assert _rel(x["grad"], ref.grad) <= 1e-12, (method, r)
            assert x["inner_steps"] == ref.cost.inner_steps  # the full work on every rank


@pytest.mark.slow
def test_torchrun_recipe_on_two_cpu_ranks(tmp_path):
    b, seed, world = 6, 0, 2
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
               OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}",
           str(ROOT / "examples" / "torchrun_fg2u.py"), str(tmp_path), str(b), str(seed)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    from metagrad.tasks import families
    problem, alpha = families.hyper_cleaning(n_train=10, n_val=12, d=3, C=3, T=12)
    V = torch.cat([mg.fg2u_directions(alpha, b, seed=seed, rank=r, world_size=world) for r in range(world)])
    ref = mg.hypergrad(problem, alpha, "fg2u", directions=V)
    for r in range(world):
        x = torch.load(tmp_path / f"rank{r}.pt", weights_only=False)
        assert x["rank"] == r and x["world"] == world
        assert _rel(x["grad"], ref.grad) <= 1e-12
        assert x["jvps"] == (b // world) * problem.T  # each rank did its share only
