"""metagrad.precision: the float32 hypergradient against float64, on a problem where rounding is
harmless (short unroll) and one where it dominates (a chaotic unroll), and the error for losses
that hold float32 weights in a closure."""
import pytest
import torch

import metagrad as mg
from metagrad.errors import ConfigError
from metagrad.precision import in_float64, precision_check

X = torch.randn(16, generator=torch.Generator().manual_seed(0))


def _inner(w, a, b):
    return (a["s"] * (w["w"] - b) ** 2).sum() / 2 + torch.cos(3 * w["w"]).sum()


def _outer(w, a, b):
    return ((w["w"] - b) ** 2).sum()


def _problem(T):
    return mg.BilevelProblem(_inner, _outer, init={"w": torch.zeros(16)}, optimizer=mg.SGD(lr=0.9), T=T,
                             inner_batches=X, outer_batch=X * 0.5)


def test_short_unroll_agrees_with_float64():
    r = precision_check(_problem(3), {"s": torch.ones(16)})
    assert r.dtype == "float32" and r.rel_err < 1e-4 and r.cosine > 0.9999 and r.reliable


def test_chaotic_unroll_is_flagged():
    # lr 0.9 on a cosine landscape: the unroll is chaotic and float32 loses the direction
    r = precision_check(_problem(20), {"s": torch.ones(16)})
    assert not r.reliable and r.rel_err > 0.5 and abs(r.cosine) < 0.5
    assert r.norm64 > 1e10  # float64's hypergradient is itself huge: the problem, not the method


def test_in_float64_converts_data_weights_and_batch_functions_but_not_the_original():
    p = _problem(3).replace(inner_batches=lambda t: X)
    p64 = in_float64(p)
    assert p64.init["w"].dtype == torch.float64 and p64.batch(0).dtype == torch.float64
    assert p64.outer_batch.dtype == torch.float64
    assert p.init["w"].dtype == torch.float32 and p.batch(0).dtype == torch.float32


def test_float32_weights_in_a_closure_get_an_error_naming_the_fix():
    W = torch.randn(16, 16, generator=torch.Generator().manual_seed(1)) * 0.1

    def inner(w, a, b):
        return ((w["w"] @ W - b) ** 2).sum() * a["s"].mean()
    p = mg.BilevelProblem(inner, _outer, init={"w": torch.zeros(16)}, optimizer=mg.SGD(lr=0.1), T=3,
                          inner_batches=X, outer_batch=X)
    with pytest.raises(ConfigError, match="problem64"):
        precision_check(p, {"s": torch.ones(16)})
    W64 = W.double()

    def inner64(w, a, b):
        return ((w["w"] @ W64 - b) ** 2).sum() * a["s"].mean()
    r = precision_check(p, {"s": torch.ones(16)}, problem64=in_float64(p.replace(inner_loss=inner64)))
    assert r.reliable and r.rel_err < 1e-4
