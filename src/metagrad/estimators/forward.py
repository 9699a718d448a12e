r"""Forward-mode estimators: exact ``fmd``, (FG)²U ``fg2u`` and its zeroth-order ``fg2u-zo``.

All three rest on directional derivatives :math:`F'(\alpha)[v] = \nabla F \cdot v`. Forward
unrolling carries the tangent :math:`Z_t v` (a P-vector) next to :math:`w_t`:
:math:`Z_t v = A_t Z_{t-1} v + B_t v` — one JVP per step, memory independent of T.

(FG)²U (Shen et al. 2024, eq. 6): with b random directions, :math:`E[v v^\top] = I`,

.. math:: \hat g = \frac1b \sum_{i=1}^b (\nabla F \cdot v_i)\, v_i,\qquad
          E\|\hat g - \nabla F\|^2 = \tfrac{N-1}{b}\|\nabla F\|^2 \text{ (Rademacher)},\;
          \tfrac{N+1}{b}\|\nabla F\|^2 \text{ (Gaussian)}.
"""
from __future__ import annotations

import math

import torch
from torch.func import jvp, vmap

from .._tree import flatten, unflatten, tree_numel, tree_detach, tree_leaves, tree_map, describe
from ..errors import check, ConfigError, MemoryBudgetError
from ..problem import BilevelProblem
from .. import unroll, distributed
from ._registry import register
from ._checks import available_bytes, leaves_like, _human

__all__ = ["fmd", "fg2u", "fg2u_zo", "fg2u_directions", "directional_derivatives", "chunk_for_budget"]

DISTRIBUTIONS = ("rademacher", "gaussian", "coordinate")


def fg2u_directions(alpha: dict, b: int, *, seed: int, rank: int = 0, world_size: int = 1,
                    distribution: str = "rademacher") -> torch.Tensor:
    """The directions rank ``rank`` of ``world_size`` draws: a ``[b_rank, N]`` matrix.

    ``b`` is the *global* number of directions; rank r gets ``b // world + (r < b % world)``
    of them from its own generator seeded with ``seed + 1_000_003 * r``. Concatenating the
    ranks' matrices gives the directions a 1-process run can use to reproduce a sharded one.
    Sampled on the CPU (identical on every device), then moved to α's device and dtype.
    """
    check(distribution in DISTRIBUTIONS,
          f"distribution must be one of {DISTRIBUTIONS}, got {distribution!r}")
    check(isinstance(b, int) and b >= 1, f"b (number of directions) must be an integer >= 1, got {b!r}")
    n = tree_numel(alpha)
    b_rank = b // world_size + (1 if rank < b % world_size else 0)
    gen = torch.Generator().manual_seed(int(seed) + 1_000_003 * rank)
    if distribution == "rademacher":
        v = torch.randint(0, 2, (b_rank, n), generator=gen).double() * 2 - 1
    elif distribution == "gaussian":
        v = torch.randn(b_rank, n, generator=gen, dtype=torch.float64)
    else:
        v = torch.zeros(b_rank, n, dtype=torch.float64)
        v[torch.arange(b_rank), torch.randint(0, n, (b_rank,), generator=gen)] = math.sqrt(n)
    leaf = tree_leaves(alpha)[0]
    return v.to(device=leaf.device, dtype=leaf.dtype)


def _full_objective(problem: BilevelProblem, alpha, with_state: bool = False):
    """``F(α)`` with the inner losses (and the state at T) as aux: the whole unroll as one
    pure function."""
    state = unroll.initial_state(problem, alpha)
    state, losses = unroll.run_taped(problem, alpha, state, 0, problem.T)
    out = problem.outer_loss(state[0], alpha, problem.outer_batch)
    return (out, (losses, state)) if with_state else (out, losses)


def directional_derivatives(problem: BilevelProblem, alpha: dict, V: torch.Tensor, cost, *,
                            chunk: int | None = None, vectorize: bool = True, compile: bool = False,
                            keep: dict | None = None):
    """``(F(α), [∇F·v_i]_i)`` for the rows ``v_i`` of ``V`` by forward-mode unrolling.

    ``chunk`` rows are pushed through the loop at once with ``torch.func.vmap`` (memory grows
    with ``chunk·P``, not with T); ``vectorize=False`` loops over rows in Python instead.
    ``keep``: a dict that receives the inner state at T under ``"state"`` (for ``Result.w_T``)."""
    alpha = tree_detach(alpha)
    b = V.shape[0]
    check(chunk is None or (isinstance(chunk, int) and chunk >= 1),
          f"chunk must be an integer >= 1, got {chunk!r}")
    if b == 0:  # an empty shard (fewer directions than processes): only F(α) is needed
        state = unroll.run(problem, alpha, cost=cost)
        if keep is not None:
            keep["state"] = state
        with torch.no_grad():
            return problem.outer_loss(state[0], alpha, problem.outer_batch), V.new_zeros(0)
    chunk = b if chunk is None else chunk
    with_state = keep is not None

    def one(v_flat):
        out, tangent, aux = jvp(lambda a: _full_objective(problem, a, with_state), (alpha,),
                                (unflatten(v_flat, alpha),), has_aux=True)
        return out, tangent, aux

    values, losses = [], None
    for i in range(0, b, chunk if vectorize else 1):
        if compile and vectorize:
            f, tangent, losses, state = _compiled_chunk(problem, alpha, V[i:i + chunk])
            aux = (losses, state) if with_state else losses
        elif vectorize:
            out, tangent, aux = vmap(one)(V[i:i + chunk])
            f = out[0]
            aux = tree_map(lambda x: x[0], aux)  # the primal run is the same for every row
        else:
            f, tangent, aux = one(V[i])
            tangent = tangent.reshape(1)
        losses, state = aux if with_state else (aux, None)
        if with_state:
            keep["state"] = tree_detach(state)
        values.append(tangent)
        cost.inner_steps += problem.T
        cost.jvps += problem.T * tangent.shape[0]
        unroll.check_losses(losses, 0, problem, alpha)
    return f.detach(), torch.cat(values).detach()


def _compiled_chunk(problem, alpha, V):
    """``(F, tangents, losses, state_T)`` for one chunk of directions, stepping with the compiled
    tangent-carrying transition of :mod:`metagrad.compiled`."""
    from .. import compiled
    Vt = unflatten(V, alpha)
    state, tangents = compiled.tangent_init(problem, alpha, Vt)
    losses = []
    for t in range(problem.T):
        state, tangents, loss = compiled.tangent_step(problem, state, tangents, alpha, Vt, t)
        losses.append(loss)
    f, tangent = compiled.tangent_outer(problem, state, tangents, alpha, Vt)
    return f, tangent, torch.stack(losses), state


def _directions_from(alpha, directions, b, seed, distribution, rank, world):
    if directions is None:
        if seed is None:
            seed = int(torch.randint(0, 2**31 - 1, (1,)))
        return fg2u_directions(alpha, b, seed=seed, rank=rank, world_size=world,
                               distribution=distribution)
    n = tree_numel(alpha)
    if isinstance(directions, dict):  # a tree like alpha with a leading batch dimension
        try:
            directions = torch.cat([d.reshape(d.shape[0], -1) for d in
                                    leaves_like(alpha, directions)], dim=1)  # nested α too
        except (KeyError, AttributeError, RuntimeError, IndexError):
            raise ConfigError(f"alpha and directions structure mismatch: alpha is {describe(alpha)}, "
                              f"directions is {describe(directions)}; pass a [b, N={n}] tensor or a "
                              f"dict with alpha's keys and a leading batch dimension") from None
    if not (isinstance(directions, torch.Tensor) and directions.dim() == 2 and directions.shape[1] == n):
        raise ConfigError(f"directions must be a [b, N={n}] tensor (N = number of hyperparameters), got "
                          f"{describe(directions)}")
    if directions.shape[0] == 0 and world == 1:
        raise ConfigError("directions must have at least one row (one direction per row)")
    leaf = tree_leaves(alpha)[0]
    return directions.to(device=leaf.device, dtype=leaf.dtype)


def _aggregate(alpha, V, s, reduce: bool = True):
    """``(1/b) Σ s_i v_i``, summed over ranks with one all-reduce (``reduce=False``: this rank's)."""
    partial = torch.cat([(s[:, None] * V).sum(0), torch.tensor([float(V.shape[0])],
                                                               dtype=V.dtype, device=V.device)])
    total = distributed.all_reduce_sum(partial) if reduce else partial
    return unflatten(total[:-1] / total[-1], alpha)


@register("fmd")
def fmd(problem, alpha, cost, *, chunk: int | None = None):
    r"""Exact forward-mode differentiation: N JVP unrolls along the coordinate directions.

    Cost: T·N transition JVPs (in ``N/chunk`` passes). Memory: O(chunk·P) tangents, flat in T;
    ``chunk=None`` carries the whole P×N Jacobian :math:`Z_t` (checked against free memory).
    Reference: Franceschi et al. 2017 (forward-mode HO); (FG)²U paper §2.
    """
    n = tree_numel(alpha)
    chunk = n if chunk is None else chunk
    check(isinstance(chunk, int) and chunk >= 1, f"chunk must be an integer >= 1, got {chunk!r}")
    _check_memory(problem, alpha, min(chunk, n))
    values, f, keep = [], None, {}
    for i in range(0, n, chunk):
        c = min(chunk, n - i)
        E = torch.zeros(c, n, dtype=tree_leaves(alpha)[0].dtype, device=tree_leaves(alpha)[0].device)
        E[torch.arange(c), torch.arange(i, i + c)] = 1
        f, s = directional_derivatives(problem, alpha, E, cost, keep=keep)
        values.append(s)
    return unflatten(torch.cat(values), alpha), f, keep["state"]




def _check_memory(problem, alpha, chunk: int) -> None:
    with torch.no_grad():
        state = unroll.initial_state(problem, tree_detach(alpha))
    p = tree_numel(state)
    leaf = tree_leaves(state[0])[0]
    # tangents of the state and of the inner gradient, plus a transient copy: ~3 × chunk × P
    need = 3 * chunk * p * leaf.element_size()
    have = available_bytes(leaf.device)
    if need > have:
        raise MemoryBudgetError(
            f"fmd would carry a {p:,} x {chunk:,} tangent (inner state size P x hyperparameters at once), "
            f"needing about {_human(need)}; {_human(have)} is free on {leaf.device}. "
            f"Pass chunk=k with k <= {max(1, have // (3 * p * leaf.element_size())):,} (N/k passes), "
            f"or use method='fg2u' (memory independent of N).")


def chunk_for_budget(problem: BilevelProblem, alpha: dict, b: int, memory_budget: int) -> int:
    """The largest chunk (directions pushed through the loop at once, at most ``b``) whose peak
    memory stays under ``memory_budget`` bytes.

    Peak memory is affine in the chunk and flat in T (fg2u stores no trajectory), so it is
    probed on a 2-step copy of the problem at chunk 1 and chunk k = min(b, 4) with the
    live-tensor tracker, and the line through the two peaks is solved for the budget."""
    from ..cost import LiveTensorTracker
    from ..cost import Cost
    check(isinstance(memory_budget, (int, float)) and memory_budget > 0,
          f"memory_budget must be a number of bytes > 0, got {memory_budget!r}")
    probe = problem.replace(T=min(2, problem.T))
    leaf = tree_leaves(alpha)[0]
    gen = torch.Generator().manual_seed(0)
    V = (torch.randint(0, 2, (min(b, 4), tree_numel(alpha)), generator=gen) * 2 - 1).to(leaf)

    def peak(c: int) -> int:
        with LiveTensorTracker() as tracker:
            directional_derivatives(probe, alpha, V[:c], Cost())
        return tracker.peak
    p1 = peak(1)
    if p1 > 0.95 * memory_budget:
        raise MemoryBudgetError(
            f"fg2u needs about {_human(p1)} with one direction at a time, more than "
            f"memory_budget={_human(memory_budget)} ({int(memory_budget):,} bytes); raise the budget "
            f"or use method='fg2u-zo' (no tangents)")
    k = V.shape[0]
    if k == 1:
        return 1
    per = max((peak(k) - p1) / (k - 1), 1.0)
    # 5 % headroom: the full run's peak may exceed the 2-step probe's by a little
    return int(max(1, min(b, 1 + (0.95 * memory_budget - p1) // per)))


@register("fg2u")
def fg2u(problem, alpha, cost, *, b: int = 1, distribution: str = "rademacher",
         seed: int | None = None, chunk: int | None = None, directions=None,
         vectorize: bool = True, distributed: str = "auto", memory_budget: int | None = None,
         compile: bool = False):
    r"""(FG)²U: forward gradient unrolling with forward gradients (Shen et al. 2024, Alg. 1).

    :math:`\hat g = \frac1b\sum_i (\nabla F\cdot v_i) v_i` — unbiased; b random directions
    (``rademacher``, ``gaussian`` or ``coordinate`` = :math:`\sqrt N e_i`), vectorised in chunks
    of ``chunk`` with vmap. Under ``torch.distributed`` the b directions are sharded across
    ranks (rank-specific seeds, one all-reduce). ``directions`` ([b, N]) overrides sampling.
    ``distributed="off"`` ignores a process group (every rank draws all b directions itself).
    Cost: T·b transition JVPs. Memory: O(chunk·P), independent of T and N.
    ``memory_budget`` (bytes, instead of ``chunk``): the chunk is chosen so that the peak
    memory stays under it (:func:`chunk_for_budget`). ``compile=True``: the tangent-carrying
    step runs through :func:`metagrad.compiled.tangent_step` (``torch.compile``).
    """
    rank, world = _rank_and_world(distributed)
    V = _directions_from(alpha, directions, b, seed, distribution, rank, world)
    if memory_budget is not None:
        check(chunk is None, f"pass either chunk={chunk!r} or memory_budget={memory_budget!r}, not both")
        chunk = chunk_for_budget(problem, alpha, max(V.shape[0], 1), memory_budget)
    check(isinstance(compile, bool), f"compile must be True or False, got {compile!r}")
    keep = {}
    f, s = directional_derivatives(problem, alpha, V, cost, chunk=chunk, vectorize=vectorize,
                                   compile=compile, keep=keep)
    return _aggregate(alpha, V, s, reduce=world > 1), f, keep.get("state")


def _rank_and_world(mode):
    check(mode in ("auto", "off"), f"distributed must be 'auto' (shard the directions over an "
                                   f"initialised process group) or 'off', got {mode!r}")
    return distributed.rank_and_world() if mode == "auto" else (0, 1)


@register("fg2u-zo", black_box=True)
def fg2u_zo(problem, alpha, cost, *, b: int = 1, mu: float = 1e-4, scheme: str = "forward",
            distribution: str = "rademacher", seed: int | None = None, directions=None,
            distributed: str = "auto"):
    r"""Zeroth-order (FG)²U: directional derivatives by finite differences of the black box.

    ``forward``: :math:`(F(\alpha+\mu v)-F(\alpha))/\mu` (b+1 solves, bias O(μ));
    ``central``: :math:`(F(\alpha+\mu v)-F(\alpha-\mu v))/2\mu` (2b + 1 solves, the +1 for the
    reported F(α); bias O(μ²)).
    Works with any ``BlackBoxProblem.solve`` (numpy, scipy, ...): no derivatives at all.
    Sharded over a process group like ``fg2u`` (``distributed="auto"``) unless ``distributed="off"``.
    Reference: Shen et al. 2024, §3.3 (randomised smoothing), μ = 1e-4 in the PDE experiments.
    """
    check(isinstance(mu, (int, float)) and mu > 0, f"mu (finite-difference step) must be > 0, got {mu!r}")
    check(scheme in ("forward", "central"), f"scheme must be 'forward' or 'central', got {scheme!r}")
    rank, world = _rank_and_world(distributed)
    alpha = tree_detach(alpha)
    V = _directions_from(alpha, directions, b, seed, distribution, rank, world)
    F = _black_box_objective(problem, cost)
    f0 = F(alpha)
    s = []
    for v in V:
        shifted = unflatten(flatten(alpha) + mu * v, alpha)
        if scheme == "forward":
            s.append((F(shifted) - f0) / mu)
        else:
            back = unflatten(flatten(alpha) - mu * v, alpha)
            s.append((F(shifted) - F(back)) / (2 * mu))
    s = torch.stack(s).to(V.dtype) if s else V.new_zeros(0)
    return _aggregate(alpha, V, s, reduce=world > 1), f0


def _black_box_objective(problem, cost):
    def F(a):
        with torch.no_grad():
            if isinstance(problem, BilevelProblem):
                w = unroll.run(problem, a, cost=cost)[0]
            else:
                w = problem.solve(a)
                cost.solver_calls += 1
            return torch.as_tensor(problem.outer_loss(w, a, problem.outer_batch))
    return F
