"""Errors are part of the interface: each bad input raises a metagrad exception whose message
names the culprit and says what to do instead."""
from __future__ import annotations

import math
import re

import pytest
import torch

import metagrad as mg
import metagrad.estimators.forward as forward_module
from metagrad.tasks import families

from _helpers import small_family


@pytest.fixture
def quad():
    return small_family("quadratic", T=5)


def test_error_hierarchy():
    assert issubclass(mg.ConfigError, mg.MetagradError) and issubclass(mg.ConfigError, ValueError)
    assert issubclass(mg.InnerDivergenceError, mg.MetagradError)
    assert issubclass(mg.InnerDivergenceError, FloatingPointError)
    assert issubclass(mg.MemoryBudgetError, mg.MetagradError)
    assert issubclass(mg.MemoryBudgetError, MemoryError)


# --------------------------------------------------------------------------------------------
# options out of range
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gamma", [0, 0.0, -0.1, 1.5])
def test_gamma_outside_unit_interval(quad, gamma):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"gamma must be in \(0, 1\], got .*method='t1t2'"):
        mg.hypergrad(problem, alpha, "greedy", gamma=gamma)


def test_gamma_one_is_allowed(quad):
    mg.hypergrad(*quad, "greedy", gamma=1)
    mg.hypergrad(*quad, "greedy", gamma=1.0)


@pytest.mark.parametrize("method", ["fg2u", "fg2u-zo"])
@pytest.mark.parametrize("b", [0, -3, 2.5])
def test_b_below_one(quad, method, b):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"b \(number of directions\) must be an integer >= 1, "
                                             rf"got {re.escape(repr(b))}"):
        mg.hypergrad(problem, alpha, method, b=b, seed=0)


def test_fg2u_directions_b_below_one(quad):
    _, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"b \(number of directions\) must be an integer >= 1"):
        mg.fg2u_directions(alpha, 0, seed=0)


@pytest.mark.parametrize("method,what", [("trgu", "truncation length"), ("neumann", "Neumann terms"),
                                         ("cg", "CG iterations")])
@pytest.mark.parametrize("K", [-1, -10])
def test_K_negative(quad, method, what, K):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=rf"K \({what}\) must be an integer >= 0, got {K}"):
        mg.hypergrad(problem, alpha, method, K=K)


def test_trgu_K_above_horizon(quad):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"K=6 exceeds the horizon T=5; pass K <= T \(K = T is full rmd\)"):
        mg.hypergrad(problem, alpha, "trgu", K=6)


@pytest.mark.parametrize("checkpoint", [0, -1, 6, 2.0])
def test_rmd_checkpoint_out_of_range(quad, checkpoint):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"checkpoint must be an integer in \[1, T=5\]"):
        mg.hypergrad(problem, alpha, "rmd", checkpoint=checkpoint)


@pytest.mark.parametrize("method", ["fmd", "fg2u"])
def test_chunk_below_one(quad, method):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"chunk must be an integer >= 1, got 0"):
        mg.hypergrad(problem, alpha, method, chunk=0)


@pytest.mark.parametrize("mu", [0, -1e-3])
def test_fg2u_zo_mu_not_positive(quad, mu):
    with pytest.raises(mg.ConfigError, match=r"mu \(finite-difference step\) must be > 0"):
        mg.hypergrad(*quad, "fg2u-zo", mu=mu, seed=0)


def test_fg2u_zo_unknown_scheme(quad):
    with pytest.raises(mg.ConfigError, match=r"scheme must be 'forward' or 'central', got 'backward'"):
        mg.hypergrad(*quad, "fg2u-zo", scheme="backward", seed=0)


@pytest.mark.parametrize("method", ["fg2u", "fg2u-zo"])
def test_unknown_distribution(quad, method):
    with pytest.raises(mg.ConfigError, match=r"distribution must be one of .*rademacher.*got 'uniform'"):
        mg.hypergrad(*quad, method, distribution="uniform", seed=0)


@pytest.mark.parametrize("method", ["neumann", "hessian-free"])
def test_eta_not_positive(quad, method):
    with pytest.raises(mg.ConfigError, match=r"eta \(Neumann step\) must be > 0"):
        mg.hypergrad(*quad, method, eta=0.0)


# --------------------------------------------------------------------------------------------
# problem definition
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("T", [0, -1, 2.0, True])
def test_horizon_below_one(T):
    problem, _ = small_family("quadratic")
    with pytest.raises(mg.ConfigError, match=r"T \(the horizon\) must be an integer >= 1, got .*; pass e\.g\. T=10"):
        mg.BilevelProblem(problem.inner_loss, problem.outer_loss, init=problem.init, T=T)
    with pytest.raises(mg.ConfigError, match=r"T \(the horizon\) must be an integer >= 1"):
        problem.replace(T=T)


def test_optimizer_must_follow_the_protocol():
    problem, _ = small_family("quadratic")
    with pytest.raises(mg.ConfigError, match=r"torch\.optim\.SGD, which updates in place"):
        problem.replace(optimizer=torch.optim.SGD)
    with pytest.raises(mg.ConfigError, match=r"lacks the method\(s\) \['init', 'step', 'hyper'\]"):
        problem.replace(optimizer="sgd")


def test_optimizer_hyperparameter_must_be_number_or_callable():
    with pytest.raises(mg.ConfigError, match=r"SGD\.lr must be a number or a callable alpha -> tensor, got str"):
        mg.SGD(lr="0.1")
    with pytest.raises(mg.ConfigError, match=r"Adam\.beta1 must be a number or a callable"):
        mg.Adam(beta1=None)


def test_losses_and_init_must_be_callable_or_dict():
    problem, _ = small_family("quadratic")
    with pytest.raises(mg.ConfigError, match=r"inner_loss must be a function \(w, alpha, batch\) -> scalar"):
        problem.replace(inner_loss=3)
    with pytest.raises(mg.ConfigError, match=r"outer_loss must be a function"):
        problem.replace(outer_loss=None)
    with pytest.raises(mg.ConfigError, match=r"init must be a dict of tensors \(w_0\) or a function"):
        problem.replace(init=torch.zeros(8))
    with pytest.raises(mg.ConfigError, match=r"solve must be a function alpha -> w_T"):
        mg.BlackBoxProblem(solve=None, outer_loss=problem.outer_loss)


# --------------------------------------------------------------------------------------------
# method and option names
# --------------------------------------------------------------------------------------------
def test_unknown_method(quad):
    with pytest.raises(mg.ConfigError, match=r"unknown method 'rmdd'; available: .*fg2u.*rmd"):
        mg.hypergrad(*quad, "rmdd")
    with pytest.raises(mg.ConfigError, match=r"unknown method"):
        mg.options_of("nope")


def test_available_methods_lists_every_estimator():
    methods = mg.available_methods()
    assert set(methods) >= {"rmd", "trgu", "fmd", "fg2u", "fg2u-zo", "greedy", "t1t2", "fo",
                            "neumann", "cg", "hessian-free"}
    assert methods == sorted(methods)
    assert set(mg.available_methods(black_box=True)) == {"fg2u-zo", "fo"}


@pytest.mark.parametrize("method,option", [("rmd", "K"), ("greedy", "gama"), ("fg2u", "mu"),
                                           ("t1t2", "gamma"), ("cg", "eta")])
def test_unknown_option(quad, method, option):
    known = mg.options_of(method)
    with pytest.raises(mg.ConfigError, match=rf"method '{method}' has no option\(s\) \['{option}'\]; "
                                             rf"its options are {re.escape(str(known or 'none'))}"):
        mg.hypergrad(*quad, method, **{option: 1})


# --------------------------------------------------------------------------------------------
# structures and shapes
# --------------------------------------------------------------------------------------------
def test_directions_dict_with_wrong_keys(quad):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"alpha and directions structure mismatch: alpha is "
                                             r"\{'a': tensor\(4,\)\}, directions is \{'b': tensor\(3, 4\)\}"):
        mg.hypergrad(problem, alpha, "fg2u", directions={"b": torch.ones(3, 4, dtype=torch.float64)})


@pytest.mark.parametrize("shape", [(3, 5), (4,), (2, 2, 2)])
def test_directions_tensor_with_wrong_shape(quad, shape):
    problem, alpha = quad
    with pytest.raises(mg.ConfigError, match=r"directions must be a \[b, N=4\] tensor \(N = number of "
                                             r"hyperparameters\), got tensor"):
        mg.hypergrad(problem, alpha, "fg2u", directions=torch.ones(*shape, dtype=torch.float64))


@pytest.mark.parametrize("method", ["fg2u", "fg2u-zo"])
def test_empty_directions(quad, method):
    """Zero directions give no estimate: the message must say so (not 'chunk must be >= 1')."""
    with pytest.raises(mg.ConfigError, match=r"directions.*(empty|at least one|>= ?1)"):
        mg.hypergrad(*quad, method, directions=torch.zeros(0, 4, dtype=torch.float64))


def test_directions_structure_mismatch_in_fg2u_zo(quad):
    with pytest.raises(mg.ConfigError, match=r"directions must be a \[b, N=4\] tensor"):
        mg.hypergrad(*quad, "fg2u-zo", directions=torch.ones(2, 3, dtype=torch.float64))


@pytest.mark.parametrize("alpha", [torch.zeros(4), {}, [torch.zeros(4)]])
def test_alpha_must_be_a_nonempty_dict(quad, alpha):
    problem, _ = quad
    with pytest.raises(mg.ConfigError, match=r"alpha must be a non-empty dict of tensors, got"):
        mg.hypergrad(problem, alpha, "rmd")


def test_alpha_leaves_must_be_floating_point(quad):
    problem, _ = quad
    with pytest.raises(mg.ConfigError, match=r"every leaf of alpha must be a floating-point tensor"):
        mg.hypergrad(problem, {"a": torch.zeros(4, dtype=torch.long)}, "rmd")


@pytest.mark.parametrize("which", ["inner_loss", "outer_loss"])
@pytest.mark.parametrize("method", ["rmd", "fg2u", "greedy"])
def test_loss_that_is_not_a_scalar(which, method):
    problem, alpha = small_family("quadratic", T=3)
    good = getattr(problem, which)

    def vector_loss(w, a, d):
        return good(w, a, d) * torch.ones(3, dtype=torch.float64)
    bad = problem.replace(**{which: vector_loss})
    with pytest.raises(mg.ConfigError, match=rf"{which} must return a scalar \(0-dim\) tensor, got shape "
                                             r"\(3,\); reduce it with \.mean\(\) or \.sum\(\)"):
        mg.hypergrad(bad, alpha, method, **({"seed": 0} if method == "fg2u" else {}))


def test_loss_that_is_not_a_tensor():
    problem, alpha = small_family("quadratic", T=3)
    bad = problem.replace(outer_loss=lambda w, a, d: 1.0)
    with pytest.raises(mg.ConfigError, match=r"outer_loss must return a scalar \(0-dim\) tensor, got shape float"):
        mg.hypergrad(bad, alpha, "rmd")


# --------------------------------------------------------------------------------------------
# inner divergence
# --------------------------------------------------------------------------------------------
def _first_non_finite_step(problem, alpha) -> int:
    from metagrad import unroll
    state = unroll.initial_state(problem, alpha)
    with torch.no_grad():
        for t in range(problem.T):
            state, loss = unroll.transition(problem, state, alpha, t)
            if not math.isfinite(float(loss)):
                return t
    raise AssertionError("the problem did not diverge")


@pytest.mark.parametrize("method,options", [
    ("rmd", {}), ("rmd", {"checkpoint": 7}), ("trgu", {"K": 3}), ("fg2u", {"b": 2, "seed": 0}),
    ("greedy", {}), ("t1t2", {}), ("fmd", {}), ("fmd", {"chunk": 3}), ("neumann", {}), ("cg", {}),
    ("fg2u-zo", {"seed": 0}), ("fo", {}),
])
def test_inner_divergence_names_the_step_and_suggests_a_smaller_lr(method, options):
    problem, alpha = families.quadratic(P=8, N=4, T=40, eta=1e8)  # |1 - ηλ| ≈ 1e8 per step
    step = _first_non_finite_step(problem, alpha)
    assert 0 < step < problem.T - 1
    with pytest.raises(mg.InnerDivergenceError,
                       match=rf"the inner loss became (inf|nan) at inner step {step} \(0-based\): the "
                             r"inner optimisation diverged; try a smaller inner learning rate "
                             r"\(e\.g\. lr=1e\+07 instead of 1e\+08\)") as info:
        mg.hypergrad(problem, alpha, method, **options)
    assert info.value.step == step and info.value.lr == 1e8


def test_inner_divergence_with_a_learned_learning_rate():
    """The hint reads the learning rate off a callable hyperparameter too."""
    problem, alpha = small_family("mlp_momentum", T=20)
    alpha = dict(alpha, log_lr=torch.tensor(math.log(1e30), dtype=torch.float64))
    step = _first_non_finite_step(problem, alpha)
    with pytest.raises(mg.InnerDivergenceError, match=rf"inner step {step} .*smaller inner learning "
                                                     r"rate \(e\.g\. lr=1e\+29 instead of 1e\+30\)"):
        mg.hypergrad(problem, alpha, "rmd")


def test_inner_divergence_of_a_nan_in_the_data():
    problem, alpha = small_family("quadratic", T=4)
    data = dict(problem.outer_batch)
    data["c"] = data["c"].clone()
    data["c"][0] = float("nan")
    bad = problem.replace(inner_batches=data)
    with pytest.raises(mg.InnerDivergenceError, match=r"nan at inner step 0 .*check the data for NaN/Inf"):
        mg.hypergrad(bad, alpha, "rmd")


# --------------------------------------------------------------------------------------------
# memory budget
# --------------------------------------------------------------------------------------------
def _wide_problem(P: int, N: int):
    """A problem with P inner parameters and N hyperparameters whose losses are cheap at w_0."""
    def inner(w, a, d):
        return 0.5 * (w["w"] ** 2).sum() - w["w"].sum() * a["a"].sum()

    def outer(w, a, d):
        return (w["w"] ** 2).sum()
    problem = mg.BilevelProblem(inner, outer, init={"w": torch.zeros(P, dtype=torch.float64)}, T=3)
    return problem, {"a": torch.zeros(N, dtype=torch.float64)}


def test_fmd_jacobian_too_large_for_memory(monkeypatch):
    monkeypatch.setattr(forward_module, "available_bytes", lambda device: 2 ** 30)  # 1 GiB free
    problem, alpha = _wide_problem(P=1_000, N=100_000)
    # need ≈ 3 · N · P · 8 bytes = 2.4e9 bytes = 2.24 GiB
    with pytest.raises(mg.MemoryBudgetError,
                       match=r"fmd would carry a 1,000 x 100,000 tangent .*needing about 2\.24 GiB; "
                             r"1 GiB is free on cpu\. Pass chunk=k with k <= 44,739 .*method='fg2u'"):
        mg.hypergrad(problem, alpha, "fmd")


def test_fmd_suggested_chunk_fits(monkeypatch):
    """Following the message's advice works and still gives the exact gradient."""
    problem, alpha = small_family("hyper_cleaning", T=4)  # P = 12, N = 10: 3·N·P·8 = 2880 bytes
    exact = mg.hypergrad(problem, alpha, "rmd").grad
    monkeypatch.setattr(forward_module, "available_bytes", lambda device: 1_000)
    with pytest.raises(mg.MemoryBudgetError) as info:
        mg.hypergrad(problem, alpha, "fmd")
    k = int(re.search(r"chunk=k with k <= ([\d,]+)", str(info.value)).group(1).replace(",", ""))
    assert k == 1_000 // (3 * 12 * 8)
    with pytest.raises(mg.MemoryBudgetError):
        mg.hypergrad(problem, alpha, "fmd", chunk=k + 1)
    res = mg.hypergrad(problem, alpha, "fmd", chunk=k)
    for key in alpha:
        assert torch.allclose(res.grad[key], exact[key], rtol=1e-10, atol=1e-14)


def test_fmd_memory_message_states_a_nonzero_need(monkeypatch):
    """The need is stated in a unit that shows it: a 2880-byte need on a 1000-byte budget must
    not read 'needing about 0.00 GiB; 0.00 GiB is free'."""
    problem, alpha = small_family("hyper_cleaning", T=4)
    monkeypatch.setattr(forward_module, "available_bytes", lambda device: 1_000)
    with pytest.raises(mg.MemoryBudgetError) as info:
        mg.hypergrad(problem, alpha, "fmd")
    need = re.search(r"needing about ([\d.,]+)", str(info.value))
    assert need is not None and float(need.group(1).replace(",", "")) > 0, str(info.value)


def test_fmd_within_budget_does_not_raise(monkeypatch):
    monkeypatch.setattr(forward_module, "available_bytes", lambda device: 10 ** 12)
    mg.hypergrad(*small_family("quadratic", T=3), "fmd")
