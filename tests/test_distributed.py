"""(FG)²U sharded over processes (gloo on the CPU) equals one process that uses the
concatenation of every rank's directions."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad._tree import flatten
from metagrad.distributed import all_reduce_sum, rank_and_world

import _dist_worker
from _helpers import small_family

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(),
                                reason="torch.distributed is not available in this build")


def test_single_process_is_rank_zero_of_one():
    assert rank_and_world() == (0, 1)
    t = torch.arange(3.0)
    assert torch.equal(all_reduce_sum(t.clone()), t)


@pytest.mark.parametrize("b,world", [(5, 2), (4, 2), (7, 3), (1, 2)])
def test_direction_shards_partition_b(b, world):
    _, alpha = small_family("quadratic")
    shards = [mg.fg2u_directions(alpha, b, seed=3, rank=r, world_size=world) for r in range(world)]
    assert [s.shape[0] for s in shards] == [b // world + (r < b % world) for r in range(world)]
    assert sum(s.shape[0] for s in shards) == b
    assert all(s.shape[1] == 4 for s in shards)
    # rank 0 of 1 is the plain 1-process draw
    assert torch.equal(mg.fg2u_directions(alpha, b, seed=3),
                       mg.fg2u_directions(alpha, b, seed=3, rank=0, world_size=1))


def _one_process_reference(family, method, b, seed, world, distribution="rademacher", **options):
    problem, alpha = small_family(family)
    V = torch.cat([mg.fg2u_directions(alpha, b, seed=seed, rank=r, world_size=world,
                                      distribution=distribution) for r in range(world)])
    assert V.shape[0] == b
    return mg.hypergrad(problem, alpha, method, directions=V, **options)


def _rel(a, b) -> float:
    return float((flatten(a) - flatten(b)).norm() / flatten(b).norm())


# Cases run in one 2-process launch: (family, method, options); b odd → uneven shards (3 + 2).
CASES = [
    ("mlp_momentum", "fg2u", {"b": 5, "seed": 17}),
    ("hyper_cleaning", "fg2u", {"b": 5, "seed": 3, "distribution": "gaussian", "chunk": 2}),
    ("hyper_cleaning", "fg2u-zo", {"b": 3, "seed": 5, "mu": 1e-3, "scheme": "central"}),
]


@pytest.mark.slow
def test_sharded_estimates_on_two_processes_equal_one_process():
    world = 2
    results = mg.distributed.launch(_dist_worker.hypergrads, world, CASES, threads_per_process=1)
    assert len(results) == world
    for i, (family, method, options) in enumerate(CASES):
        options = dict(options)
        b, seed = options.pop("b"), options.pop("seed")
        ref = _one_process_reference(family, method, b, seed, world, **options)
        per_rank = [results[r][i] for r in range(world)]
        assert [x["rank"] for x in per_rank] == [0, 1] and all(x["world"] == 2 for x in per_rank)
        for x in per_rank:  # every rank ends with the same, all-reduced estimate
            assert _rel(x["grad"], ref.grad) <= 1e-12, (family, method, _rel(x["grad"], ref.grad))
            assert float(x["loss"]) == pytest.approx(float(ref.loss), rel=1e-12)
        if method == "fg2u":
            T = small_family(family)[0].T
            assert [x["jvps"] for x in per_rank] == [3 * T, 2 * T]  # each rank's own share


@pytest.mark.slow
def test_fg2u_with_fewer_directions_than_processes():
    """b = 1 on 2 processes: rank 1 draws no direction (fg2u_directions gives it a [0, N]
    matrix) and must contribute nothing — 0 to the sum and 0 to the count — not crash."""
    b, seed, world = 1, 4, 2
    results = mg.distributed.launch(_dist_worker.hypergrads, world,
                                    [("quadratic", "fg2u", {"b": b, "seed": seed})],
                                    threads_per_process=1)
    ref = _one_process_reference("quadratic", "fg2u", b, seed, world)
    for r in results:
        assert _rel(r[0]["grad"], ref.grad) <= 1e-12
