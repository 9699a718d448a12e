"""torch interop: outer_loop with any torch.optim optimiser (scheduler, clipping, checkpoint
resume), and the autograd bridge mg.objective (hypergradient into alpha.grad by .backward())."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad.errors import ConfigError
from metagrad.loops import OuterConfig, outer_loop

from _helpers import small_family


def _alpha_params():
    _, alpha = small_family("quadratic")
    return {k: v.clone().requires_grad_(True) for k, v in alpha.items()}


def _problem(step):
    return small_family("quadratic")[0]


def test_torch_sgd_reproduces_the_built_in_sgd_outer_loop():
    cfg = OuterConfig(method="rmd", steps=4, optimizer="sgd", lr=0.05)
    ours = outer_loop(_problem, small_family("quadratic")[1], cfg, progress=False)
    alpha = _alpha_params()
    theirs = outer_loop(_problem, alpha, cfg, progress=False,
                        optimizer=torch.optim.SGD(alpha.values(), lr=0.05))
    for k in alpha:
        assert torch.allclose(ours.alpha[k], theirs.alpha[k], rtol=1e-12, atol=1e-14)
        assert torch.equal(alpha[k].detach(), theirs.alpha[k])  # the optimiser's tensors moved
    assert [r["outer_loss"] for r in ours.records] == pytest.approx([r["outer_loss"] for r in theirs.records])


def test_scheduler_and_clipping_are_applied():
    alpha = _alpha_params()
    start = {k: v.detach().clone() for k, v in alpha.items()}
    opt = torch.optim.SGD(alpha.values(), lr=1.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    hist = outer_loop(_problem, alpha, OuterConfig(method="rmd", steps=3), progress=False,
                      optimizer=opt, scheduler=sched, clip_grad_norm=1e-3)
    assert [r["outer_lr"] for r in hist.records] == [0.5, 0.25, 0.125]
    moved = torch.cat([(hist.alpha[k] - start[k]).reshape(-1) for k in start]).norm()
    # SGD steps of length lr_t * 1e-3 at most (lr 1, 0.5, 0.25): clipping bounds the distance
    assert 0 < float(moved) <= 1e-3 * (1 + 0.5 + 0.25) + 1e-12
    with pytest.raises(ConfigError, match="torch.optim optimizer"):
        outer_loop(_problem, alpha, OuterConfig(method="rmd", steps=1), progress=False, clip_grad_norm=1.0)


def test_an_optimizer_over_other_tensors_is_refused():
    alpha = _alpha_params()
    other = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(ConfigError, match="alpha's own tensors"):
        outer_loop(_problem, alpha, OuterConfig(method="rmd", steps=1), progress=False,
                   optimizer=torch.optim.Adam(other))


class _Stop(Exception):
    pass


def test_resume_from_a_checkpoint_restores_the_torch_optimizer(tmp_path):
    cfg = OuterConfig(method="rmd", steps=5, checkpoint_every=2, eval_every=3)
    path = tmp_path / "ck.pt"

    def make():
        alpha = _alpha_params()
        opt = torch.optim.Adam(alpha.values(), lr=0.05)
        return alpha, opt, torch.optim.lr_scheduler.ExponentialLR(opt, gamma=0.9)

    alpha, opt, sched = make()
    full = outer_loop(_problem, alpha, cfg, progress=False, optimizer=opt, scheduler=sched)

    def crash(a):
        raise _Stop
    alpha, opt, sched = make()
    with pytest.raises(_Stop):  # interrupted at step 3, after the checkpoint of step 2
        outer_loop(_problem, alpha, cfg, progress=False, optimizer=opt, scheduler=sched,
                   checkpoint=path, evaluate=crash)
    alpha, opt, sched = make()
    resumed = outer_loop(_problem, alpha, cfg, progress=False, optimizer=opt, scheduler=sched,
                         checkpoint=path, evaluate=lambda a: {})
    for k in alpha:
        assert torch.allclose(resumed.alpha[k], full.alpha[k], rtol=1e-12, atol=1e-14)
    assert resumed.records[-1]["outer_lr"] == pytest.approx(full.records[-1]["outer_lr"])


@pytest.mark.parametrize("method,options", [("rmd", {}), ("fg2u", {"b": 3, "seed": 1})])
def test_objective_backward_puts_the_hypergradient_into_alpha_grad(method, options):
    problem, alpha = small_family("quadratic")
    alpha = {k: v.clone().requires_grad_(True) for k, v in alpha.items()}
    ref = mg.hypergrad(problem, {k: v.detach() for k, v in alpha.items()}, method, **options)
    loss = mg.objective(problem, alpha, method, **options)
    assert loss.requires_grad and loss.item() == pytest.approx(float(ref.loss), rel=1e-12)
    (3.0 * loss).backward()
    for k in alpha:
        assert torch.allclose(alpha[k].grad, 3.0 * ref.grad[k], rtol=1e-12, atol=0)


def test_objective_inside_a_plain_torch_training_loop():
    problem, alpha = small_family("quadratic")
    alpha = {k: v.clone().requires_grad_(True) for k, v in alpha.items()}
    opt = torch.optim.Adam(alpha.values(), lr=0.05)
    losses = []
    for _ in range(15):
        opt.zero_grad()
        loss = mg.objective(problem, alpha, "rmd")
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("method,options", [
    ("rmd", {}), ("rmd", {"checkpoint": 3}), ("trgu", {"K": 2}), ("trgu", {"K": 0}), ("fmd", {"chunk": 3}),
    ("fg2u", {"b": 3, "seed": 0}), ("fg2u", {"b": 2, "seed": 0, "vectorize": False}), ("greedy", {}),
    ("t1t2", {}), ("fo", {}), ("fomaml", {}), ("cg", {}), ("neumann", {}), ("hessian-free", {})])
def test_every_inner_loop_method_returns_w_T_for_warm_starts(method, options):
    from metagrad import unroll
    problem, alpha = small_family("mlp_momentum")
    res = mg.hypergrad(problem, alpha, method, **options)
    state = unroll.run(problem, alpha)
    for k in state[0]:
        assert torch.allclose(res.w_T[k], state[0][k], rtol=1e-12, atol=1e-13), (method, k)
        assert not res.w_T[k].requires_grad
    assert set(res.state_T[1]) == set(state[1])  # the optimiser buffers too (momentum here)


def test_a_warm_start_from_w_T_continues_the_inner_run():
    """SGD has no buffers: T1 steps, then T2 steps from w_T, equal T1 + T2 steps."""
    from metagrad import unroll
    problem, alpha = small_family("quadratic")
    first = mg.hypergrad(problem.replace(T=6), alpha, "rmd")
    warm = problem.replace(init=first.w_T, T=7)
    direct = unroll.run(problem.replace(T=13), alpha)[0]
    assert all(torch.allclose(unroll.run(warm, alpha)[0][k], direct[k], rtol=1e-12, atol=1e-13) for k in direct)


def test_black_box_runs_have_no_w_T():
    problem, alpha = small_family("quadratic")
    assert mg.hypergrad(problem, alpha, "fg2u-zo", b=2, seed=0).w_T is None
