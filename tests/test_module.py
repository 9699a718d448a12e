"""Bring your own nn.Module: a BatchNorm CNN in train mode through mg.from_module.

* rmd, fmd, trgu(K=T) and fg2u with the √N·e_i directions equal central finite differences
  (float64); fg2u (random), greedy, cg, t1t2 and neumann run and give finite estimates;
* the running statistics carried in the inner state equal those of a plain torch training
  loop of the same model; ``num_batches_tracked`` counts the inner steps;
* nothing is mutated: neither the model, nor ``net.buffers``, by validate() or by any method;
* ``init=<nn.Module>`` and an in-place-mutating loss get errors that point to from_module.
"""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

import metagrad as mg
from metagrad import unroll
from metagrad.errors import ConfigError

from _helpers import fd_hypergrad, rel_err

T = 4


def _cnn(device="cpu"):
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 3, 3), nn.BatchNorm2d(3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(3 * 4 * 4, 6), nn.BatchNorm1d(6), nn.ReLU(),
                         nn.Linear(6, 3)).double().to(device)


def _data(device="cpu"):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(8, 1, 6, 6, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (8,), generator=g)
    xv = torch.randn(6, 1, 6, 6, generator=g, dtype=torch.float64)
    yv = torch.randint(0, 3, (6,), generator=g)
    return (x.to(device), y.to(device)), (xv.to(device), yv.to(device))


def _problem(model, device="cpu", optimizer=None):
    net = mg.from_module(model)
    train, val = _data(device)

    def inner(w, a, batch):
        x, y = batch
        decay = sum((p ** 2).sum() for p in w.values())
        return F.cross_entropy(net(w, x), y) + torch.exp(a["log_wd"]) * decay

    def outer(w, a, batch):
        x, y = batch
        return F.cross_entropy(net(w, x), y)
    optimizer = optimizer or mg.Momentum(lr=lambda a: a["lr"], momentum=0.5)
    problem = mg.BilevelProblem(inner, outer, init=net.params, buffers=net.buffers,
                                optimizer=optimizer, T=T, inner_batches=train, outer_batch=val)
    alpha = {"log_wd": torch.tensor(-3.0, dtype=torch.float64, device=device),
             "lr": torch.tensor(0.3, dtype=torch.float64, device=device)}
    return net, problem, alpha


@pytest.fixture(scope="module")
def bn_case():
    model = _cnn()
    net, problem, alpha = _problem(model)
    return model, net, problem, alpha, fd_hypergrad(problem, alpha)


@pytest.mark.parametrize("method,options", [("rmd", {}), ("rmd", {"checkpoint": 1}), ("fmd", {}),
                                            ("trgu", {"K": T})])
def test_batchnorm_cnn_exact_methods_equal_finite_differences(bn_case, method, options):
    _, _, problem, alpha, fd = bn_case
    assert float(fd.abs().min()) > 1e-6  # both hyperparameters matter
    res = mg.hypergrad(problem, alpha, method, **options)
    assert rel_err(res.grad, fd) <= 1e-6


def test_batchnorm_cnn_fg2u_with_scaled_coordinate_directions_is_exact(bn_case):
    _, _, problem, alpha, fd = bn_case
    n = len(alpha)
    res = mg.hypergrad(problem, alpha, "fg2u", directions=n ** 0.5 * torch.eye(n, dtype=torch.float64))
    assert rel_err(res.grad, fd) <= 1e-6


@pytest.mark.parametrize("method,options", [("fg2u", {"b": 3, "seed": 0}), ("greedy", {"gamma": 0.9}),
                                            ("cg", {"K": 3}), ("t1t2", {}), ("neumann", {"K": 2}),
                                            ("fomaml", {})])
def test_batchnorm_cnn_runs_with_every_method(bn_case, method, options):
    _, _, problem, alpha, fd = bn_case
    res = mg.hypergrad(problem, alpha, method, **options)
    assert set(res.grad) == set(alpha)
    assert all(bool(torch.isfinite(g).all()) for g in res.grad.values())
    assert float(res.loss) == pytest.approx(float(mg.hypergrad(problem, alpha, "rmd").loss), rel=1e-12)


def test_running_statistics_follow_a_plain_torch_training_loop(bn_case):
    _, net, problem, alpha, _ = bn_case
    state = unroll.run(problem, alpha)
    bufs = state[1]["module"]["module"]
    # the same model trained by torch.optim with the same hyperparameters, in place
    ref = _cnn()
    opt = torch.optim.SGD(ref.parameters(), lr=0.3, momentum=0.5, weight_decay=2 * float(torch.exp(alpha["log_wd"])))
    (x, y), _ = _data()
    for _ in range(T):
        opt.zero_grad()
        F.cross_entropy(ref(x), y).backward()
        opt.step()
    for name, b in ref.named_buffers():
        if b.is_floating_point():
            assert torch.allclose(bufs[name], b, rtol=1e-10, atol=1e-12), name
        else:
            assert int(bufs[name]) == int(b) == T, name
    for name, p in ref.named_parameters():
        assert torch.allclose(state[0][name], p.detach(), rtol=1e-10, atol=1e-12), name
    # evaluation in eval mode with the buffers at T equals the torch model's eval forward
    ref.eval()
    assert torch.allclose(net(state[0], x, buffers=bufs, train=False), ref(x).detach(), atol=1e-10)


def test_result_keeps_the_state_at_T_for_warm_starts(bn_case):
    _, _, problem, alpha, _ = bn_case
    res = mg.hypergrad(problem, alpha, "rmd")
    state = unroll.run(problem, alpha)
    assert all(torch.allclose(res.w_T[k], state[0][k]) for k in state[0])
    assert int(res.state_T[1]["module"]["module"]["1.num_batches_tracked"]) == T
    warm = problem.replace(init=res.w_T, buffers=res.state_T[1]["module"])
    state2 = unroll.run(warm, alpha)
    assert int(state2[1]["module"]["module"]["1.num_batches_tracked"]) == 2 * T


def test_nothing_is_mutated_by_validate_or_by_the_methods():
    model = _cnn()
    before = copy.deepcopy(model.state_dict())
    net, problem, alpha = _problem(model)
    net_before = copy.deepcopy(net.buffers)
    problem.validate(alpha)
    for method in ("rmd", "fg2u", "greedy", "cg"):
        mg.hypergrad(problem, alpha, method)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    for k, v in net.buffers["module"].items():
        assert torch.equal(v, net_before["module"][k]), k
    assert model.training  # the module's mode is restored after eval-mode calls
    net(net.params, _data()[0][0], train=False)
    assert model.training


def test_frozen_parameters_are_constants():
    model = _cnn()
    model[0].weight.requires_grad_(False)
    net = mg.from_module(model)
    assert "0.weight" not in net.params and "0.bias" in net.params
    x = _data()[0][0]
    model.eval()
    assert torch.allclose(net(net.params, x, train=False), model(x).detach())


def test_init_as_a_module_points_to_from_module():
    model = _cnn()
    net, problem, _ = _problem(model)
    with pytest.raises(ConfigError, match="from_module"):
        problem.replace(init=model)
    with pytest.raises(ConfigError, match="net.params"):
        problem.replace(init=net)


def test_a_module_called_directly_gets_an_error_that_points_to_from_module():
    model = _cnn()
    names = [k for k, _ in model.named_parameters()]
    (x, y), val = _data()

    def loss(w, a, batch):
        out = torch.func.functional_call(model, dict(zip(names, w.values())), (batch[0],))
        return F.cross_entropy(out, batch[1]) * torch.exp(a["s"])
    problem = mg.BilevelProblem(loss, loss, init={k: p.detach().clone() for k, p in model.named_parameters()},
                                optimizer=mg.SGD(0.1), T=2, inner_batches=(x, y), outer_batch=val)
    alpha = {"s": torch.tensor(0.0, dtype=torch.float64)}
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ConfigError, match="inner_loss updates a tensor in place.*from_module"):
        mg.hypergrad(problem, alpha, "rmd")  # validate() refuses it before BatchNorm's statistics change
    with pytest.raises(ConfigError, match="from_module"):  # inside a torch.func transform too
        mg.hypergrad(problem, alpha, "fg2u", validate=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_from_module_refuses_a_non_module():
    with pytest.raises(ConfigError, match="nn.Module"):
        mg.from_module(lambda x: x)


def test_batchnorm_cnn_on_every_device(device):
    """Device follows the inputs: parameters, buffers and hypergradients stay on ``device``."""
    net, problem, alpha = _problem(_cnn(device), device)
    res = mg.hypergrad(problem, alpha, "rmd")
    assert res.grad["lr"].device.type == device.type
    assert all(b.device.type == device.type for b in res.state_T[1]["module"]["module"].values())
    assert rel_err(res.grad, fd_hypergrad(problem, alpha)) <= 1e-6
    assert torch.isfinite(mg.hypergrad(problem, alpha, "fg2u", b=2, seed=0).grad["lr"])


def test_two_modules_and_extra_weights_in_w():
    """Two modules in one problem (distinct names), plus a weight that belongs to neither."""
    torch.manual_seed(3)
    a = mg.from_module(nn.Sequential(nn.Linear(4, 5), nn.BatchNorm1d(5)).double(), name="a")
    b = mg.from_module(nn.Sequential(nn.Linear(5, 3), nn.BatchNorm1d(3)).double(), name="b")
    w0 = {**{f"a.{k}": v for k, v in a.params.items()}, **{f"b.{k}": v for k, v in b.params.items()},
          "scale": torch.ones((), dtype=torch.float64)}

    def split(w, prefix):
        return {k[len(prefix) + 1:]: v for k, v in w.items() if k.startswith(prefix + ".")}

    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, generator=g, dtype=torch.float64), torch.randint(0, 3, (12,), generator=g)

    def loss(w, alpha, batch):
        h = torch.tanh(a(split(w, "a"), batch[0]))
        return F.cross_entropy(w["scale"] * b(split(w, "b"), h), batch[1]) * torch.exp(alpha["s"])
    problem = mg.BilevelProblem(loss, loss, init=w0, buffers={**a.buffers, **b.buffers},
                                optimizer=mg.SGD(lr=0.1), T=3, inner_batches=(x, y), outer_batch=(x, y))
    alpha = {"s": torch.tensor(0.2, dtype=torch.float64)}
    res = mg.hypergrad(problem, alpha, "rmd")
    assert rel_err(res.grad, fd_hypergrad(problem, alpha)) <= 1e-6
    assert int(res.state_T[1]["module"]["a"]["1.num_batches_tracked"]) == 3
    assert int(res.state_T[1]["module"]["b"]["1.num_batches_tracked"]) == 3


def test_eval_mode_outside_the_inner_loop_without_buffers_warns_once():
    net = mg.from_module(_cnn())
    x = _data()[0][0]
    with pytest.warns(UserWarning, match="buffers="):
        net(net.params, x, train=False)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        net(net.params, x, train=False)  # once only
        net(net.params, x, train=False, buffers=net.buffers)
