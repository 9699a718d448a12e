"""The differentiable inner optimisers: same steps as ``torch.optim``, and hyperparameters that
are functions of α receive correct hypergradients."""
from __future__ import annotations

import math

import pytest
import torch

import metagrad as mg
from metagrad import unroll

from _helpers import fd_hypergrad, rel_err

T = 6


def _data():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, 3, generator=g, dtype=torch.float64)
    y = torch.randint(0, 2, (12,), generator=g)
    return {"x": x, "y": y}


def _loss(w, batch):
    """Softmax regression with a ridge term: smooth, not quadratic, gradients of every sign."""
    logits = batch["x"] @ w["W"] + w["b"]
    return torch.nn.functional.cross_entropy(logits, batch["y"]) + 0.05 * (w["W"] ** 2).sum()


def _w0():
    g = torch.Generator().manual_seed(1)
    return {"W": torch.randn(3, 2, generator=g, dtype=torch.float64), "b": torch.zeros(2, dtype=torch.float64)}


def _problem(optimizer, T=T, init=None):
    data = _data()
    return mg.BilevelProblem(lambda w, a, d: _loss(w, d), lambda w, a, d: _loss(w, d),
                             init=init if init is not None else _w0(), optimizer=optimizer, T=T,
                             inner_batches=data, outer_batch=data)


def _metagrad_trajectory(problem, alpha):
    state = unroll.initial_state(problem, alpha)
    out = []
    with torch.no_grad():
        for t in range(problem.T):
            state, _ = unroll.transition(problem, state, alpha, t)
            out.append({k: v.clone() for k, v in state[0].items()})
    return out


def _torch_trajectory(make_optimizer, steps=T):
    params = {k: torch.nn.Parameter(v.clone()) for k, v in _w0().items()}
    opt = make_optimizer(list(params.values()))
    data, out = _data(), []
    for _ in range(steps):
        opt.zero_grad()
        _loss(params, data).backward()
        opt.step()
        out.append({k: v.detach().clone() for k, v in params.items()})
    return out


ALPHA = {"unused": torch.zeros(1, dtype=torch.float64)}


@pytest.mark.parametrize("ours,theirs", [
    (mg.SGD(lr=0.3), lambda p: torch.optim.SGD(p, lr=0.3)),
    (mg.Momentum(lr=0.2, momentum=0.9), lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9)),
    (mg.Momentum(lr=0.1, momentum=0.5), lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.5)),
    (mg.Adam(lr=0.05, eps_root=0.0), lambda p: torch.optim.Adam(p, lr=0.05)),
    (mg.Adam(lr=0.05), lambda p: torch.optim.Adam(p, lr=0.05)),  # eps_root = 1e-16: negligible here
    (mg.Adam(lr=0.1, beta1=0.8, beta2=0.99, eps=1e-6, eps_root=0.0),
     lambda p: torch.optim.Adam(p, lr=0.1, betas=(0.8, 0.99), eps=1e-6)),
], ids=["sgd", "momentum0.9", "momentum0.5", "adam", "adam-eps_root", "adam-betas"])
def test_steps_match_torch_optim(ours, theirs):
    mine = _metagrad_trajectory(_problem(ours), ALPHA)
    ref = _torch_trajectory(theirs)
    for t, (a, b) in enumerate(zip(mine, ref)):
        for k in a:
            assert torch.allclose(a[k], b[k], rtol=1e-12, atol=1e-13), (t, k, (a[k] - b[k]).abs().max())


def test_optimizer_state_layout():
    w = _w0()
    assert mg.SGD().init(w) == {}
    v = mg.Momentum().init(w)["v"]
    assert set(v) == set(w) and all(torch.equal(v[k], torch.zeros_like(w[k])) for k in w)
    buffers = mg.Adam().init(w)
    assert set(buffers) == {"m", "s"} and set(buffers["m"]) == set(w)


def test_hyper_evaluates_callables_and_numbers():
    alpha = {"log_lr": torch.tensor(math.log(0.25), dtype=torch.float64)}
    opt = mg.Momentum(lr=lambda a: torch.exp(a["log_lr"]), momentum=0.7)
    hp = opt.hyper(alpha)
    assert float(hp["lr"]) == pytest.approx(0.25) and hp["momentum"] == 0.7
    assert opt.learning_rate(alpha) == pytest.approx(0.25)
    assert isinstance(opt.learning_rate(alpha), float)
    assert mg.SGD(lr=3).learning_rate(alpha) == 3.0


def test_optimizers_are_immutable_values():
    opt = mg.Adam(lr=0.1)
    with pytest.raises(Exception):
        opt.lr = 0.2
    assert mg.Adam(lr=0.1) == opt


# --------------------------------------------------------------------------------------------
# learned optimiser hyperparameters
# --------------------------------------------------------------------------------------------
LEARNED = {
    "sgd-lr": (lambda: mg.SGD(lr=lambda a: torch.exp(a["log_lr"])),
               {"log_lr": torch.tensor(math.log(0.3), dtype=torch.float64)}),
    "momentum-lr-and-momentum": (
        lambda: mg.Momentum(lr=lambda a: torch.exp(a["log_lr"]), momentum=lambda a: torch.sigmoid(a["m"])),
        {"log_lr": torch.tensor(math.log(0.1), dtype=torch.float64),
         "m": torch.tensor(1.0, dtype=torch.float64)}),
    "adam-lr": (lambda: mg.Adam(lr=lambda a: torch.exp(a["log_lr"])),
                {"log_lr": torch.tensor(math.log(0.05), dtype=torch.float64)}),
    "adam-lr-and-beta1": (
        lambda: mg.Adam(lr=lambda a: torch.exp(a["log_lr"]), beta1=lambda a: torch.sigmoid(a["b1"])),
        {"log_lr": torch.tensor(math.log(0.05), dtype=torch.float64),
         "b1": torch.tensor(2.0, dtype=torch.float64)}),
}


@pytest.mark.parametrize("method", ["rmd", "fmd", "trgu"])
@pytest.mark.parametrize("case", list(LEARNED))
def test_learned_optimizer_hyperparameters_get_exact_hypergradients(case, method):
    factory, alpha = LEARNED[case]
    problem = _problem(factory())
    fd = fd_hypergrad(problem, alpha)
    options = {"K": problem.T} if method == "trgu" else {}
    res = mg.hypergrad(problem, alpha, method, **options)
    assert rel_err(res.grad, fd) <= 1e-6
    assert all(float(g.abs().max()) > 0 for g in res.grad.values())


def test_adam_hypergradient_is_finite_when_a_gradient_coordinate_is_exactly_zero():
    """eps_root keeps d/ds sqrt(s) finite at s = 0: a weight the loss ignores has g ≡ 0."""
    alpha = {"log_lr": torch.tensor(math.log(0.05), dtype=torch.float64)}
    data = _data()

    def loss(w, a, d):
        return _loss({"W": w["W"], "b": w["b"]}, d) + 0 * w["dead"].sum()
    init = dict(_w0(), dead=torch.zeros(2, dtype=torch.float64))
    problem = mg.BilevelProblem(loss, loss, init=init, T=T, inner_batches=data, outer_batch=data,
                                optimizer=mg.Adam(lr=lambda a: torch.exp(a["log_lr"])))
    res = mg.hypergrad(problem, alpha, "rmd")
    assert torch.isfinite(res.grad["log_lr"])
    assert rel_err(res.grad, fd_hypergrad(problem, alpha)) <= 1e-6
