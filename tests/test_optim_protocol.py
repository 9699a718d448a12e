"""The open optimiser protocol: new built-in optimisers match ``torch.optim``; a user-defined
class with no metagrad base class, per-parameter (Meta-SGD) learning rates and step schedules
get exact hypergradients (rmd vs central finite differences, float64)."""
from __future__ import annotations

import math

import pytest
import torch

import metagrad as mg
from metagrad.errors import ConfigError

from _helpers import fd_hypergrad, rel_err
from test_optim import _problem, _metagrad_trajectory, _torch_trajectory, _w0, ALPHA


@pytest.mark.parametrize("ours,theirs", [
    (mg.SGD(lr=0.3, weight_decay=0.1), lambda p: torch.optim.SGD(p, lr=0.3, weight_decay=0.1)),
    (mg.Momentum(lr=0.2, momentum=0.9, weight_decay=0.05),
     lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.9, weight_decay=0.05)),
    (mg.Nesterov(lr=0.2, momentum=0.8),
     lambda p: torch.optim.SGD(p, lr=0.2, momentum=0.8, nesterov=True)),
    (mg.Momentum(lr=0.1, momentum=0.7, nesterov=True, weight_decay=0.1),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.7, nesterov=True, weight_decay=0.1)),
    (mg.Adam(lr=0.05, eps_root=0.0, weight_decay=0.1),
     lambda p: torch.optim.Adam(p, lr=0.05, weight_decay=0.1)),
    (mg.AdamW(lr=0.05, eps_root=0.0), lambda p: torch.optim.AdamW(p, lr=0.05)),
    (mg.AdamW(lr=0.1, beta1=0.8, weight_decay=0.3, eps_root=0.0),
     lambda p: torch.optim.AdamW(p, lr=0.1, betas=(0.8, 0.999), weight_decay=0.3)),
    (mg.RMSprop(lr=0.01, eps_root=0.0), lambda p: torch.optim.RMSprop(p, lr=0.01)),
    (mg.RMSprop(lr=0.02, decay=0.9, weight_decay=0.1, eps_root=0.0),
     lambda p: torch.optim.RMSprop(p, lr=0.02, alpha=0.9, weight_decay=0.1)),
], ids=["sgd-wd", "momentum-wd", "nesterov", "nesterov-wd", "adam-wd", "adamw", "adamw-betas",
        "rmsprop", "rmsprop-decay-wd"])
def test_new_optimizers_match_torch_optim(ours, theirs):
    mine = _metagrad_trajectory(_problem(ours), ALPHA)
    ref = _torch_trajectory(theirs)
    for t, (a, b) in enumerate(zip(mine, ref)):
        for k in a:
            assert torch.allclose(a[k], b[k], rtol=1e-12, atol=1e-13), (t, k, (a[k] - b[k]).abs().max())


class SignSGD:
    """A user's optimiser: no metagrad base class, a smooth sign (tanh) update, a learned lr."""

    def init(self, w):
        return {"n": torch.zeros((), dtype=torch.float64)}

    def hyper(self, alpha):
        return {"lr": torch.exp(alpha["log_lr"])}

    def step(self, w, buffers, g, hyper, t):
        return ({k: w[k] - hyper["lr"] * torch.tanh(g[k] / 0.1) for k in w},
                {"n": buffers["n"] + 1})


def test_user_defined_optimizer_class_gets_exact_hypergradients():
    alpha = {"log_lr": torch.tensor(math.log(0.05), dtype=torch.float64)}
    problem = _problem(SignSGD())
    fd = fd_hypergrad(problem, alpha)
    for method in ("rmd", "fmd"):
        res = mg.hypergrad(problem, alpha, method)
        assert rel_err(res.grad, fd) <= 1e-6, method
    assert float(fd.abs().max()) > 0
    # no learning_rate(): implicit methods need eta explicitly, and say so
    with pytest.raises(ConfigError, match="eta"):
        mg.hypergrad(problem, alpha, "neumann")
    assert torch.isfinite(mg.hypergrad(problem, alpha, "neumann", eta=0.05).grad["log_lr"])


def test_an_object_without_the_protocol_is_refused_with_the_missing_methods():
    class NoStep:
        def init(self, w): return {}
        def hyper(self, alpha): return {}
    with pytest.raises(ConfigError, match=r"\['step'\]"):
        _problem(NoStep())


@pytest.mark.parametrize("make", [
    lambda: mg.SGD(lr=lambda a: a["lrs"]),
    lambda: mg.Momentum(lr=lambda a: a["lrs"], momentum=0.5),
    lambda: mg.Adam(lr=lambda a: a["lrs"]),
], ids=["sgd", "momentum", "adam"])
def test_meta_sgd_per_parameter_learning_rates(make):
    """Meta-SGD: one learned learning rate per weight (a dict shaped like w)."""
    w0 = _w0()
    g = torch.Generator().manual_seed(2)
    alpha = {"lrs": {k: 0.05 + 0.1 * torch.rand(v.shape, generator=g, dtype=torch.float64)
                     for k, v in w0.items()}}
    problem = _problem(make())
    res = mg.hypergrad(problem, alpha, "rmd")
    assert res.grad["lrs"]["W"].shape == w0["W"].shape
    assert rel_err(res.grad, fd_hypergrad(problem, alpha)) <= 1e-6


def test_per_parameter_constants_and_missing_keys():
    opt = mg.SGD(lr={"W": 0.3, "b": 0.0})
    traj = _metagrad_trajectory(_problem(opt), ALPHA)
    assert torch.equal(traj[-1]["b"], _w0()["b"])  # lr 0 on b: b never moves
    assert not torch.equal(traj[-1]["W"], _w0()["W"])
    with pytest.raises(ConfigError, match=r"\['b'\]"):
        _metagrad_trajectory(_problem(mg.SGD(lr={"W": 0.3})), ALPHA)


def test_schedules_follow_the_step_and_are_differentiable():
    sched = mg.SGD(lr=mg.schedule(lambda t: 0.3 * 0.5 ** t))
    mine = _metagrad_trajectory(_problem(sched), ALPHA)
    ref = _torch_trajectory(lambda p: _lambda_lr(p))
    for a, b in zip(mine, ref):
        assert all(torch.allclose(a[k], b[k], rtol=1e-12, atol=1e-13) for k in a)
    # a learned warm-up schedule: lr_t = exp(log_lr) * min(1, t / 3)
    alpha = {"log_lr": torch.tensor(math.log(0.2), dtype=torch.float64)}
    problem = _problem(mg.Momentum(lr=mg.schedule(lambda t, a: torch.exp(a["log_lr"]) * min(1, t / 3)),
                                   momentum=0.5))
    res = mg.hypergrad(problem, alpha, "rmd")
    assert rel_err(res.grad, fd_hypergrad(problem, alpha)) <= 1e-6


class _StepLR:
    """torch.optim.SGD whose lr is 0.3 * 0.5**t at step t = 1, 2, ... (via LambdaLR)."""

    def __init__(self, params):
        self.opt = torch.optim.SGD(params, lr=0.3)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: 0.5 ** (e + 1))

    def zero_grad(self):
        self.opt.zero_grad()

    def step(self):
        self.opt.step()
        self.sched.step()


def _lambda_lr(params):
    return _StepLR(params)


def test_learning_rate_of_per_parameter_lr_asks_for_eta():
    with pytest.raises(ConfigError, match="eta"):
        mg.SGD(lr={"W": 0.1, "b": 0.1}).learning_rate(ALPHA)
    with pytest.raises(ConfigError, match="eta"):
        mg.SGD(lr=mg.schedule(lambda t: 0.1)).learning_rate(ALPHA)
    with pytest.raises(ConfigError, match="schedule"):
        mg.SGD(lr="fast")
