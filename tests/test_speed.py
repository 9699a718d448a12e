"""Speed options that must not change results: fg2u's ``memory_budget`` and ``compile=True``'s
fallback (the compiled path itself is compared with the uncompiled one by the benchmark,
``python -m metagrad.bench --quick``: compiling takes minutes on a CPU)."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad import compiled
from metagrad.cost import LiveTensorTracker
from metagrad.estimators.forward import chunk_for_budget
from metagrad.tasks import families


def _problem(T=12):
    return families.hyper_cleaning(n_train=40, n_val=20, d=50, C=10, T=T)


def test_memory_budget_keeps_the_peak_under_it_and_the_estimate_unchanged():
    problem, alpha = _problem()
    b = 16
    full = mg.hypergrad(problem, alpha, "fg2u", b=b, seed=3, track_memory=True)
    budget = full.cost.peak_memory_bytes // 3
    chunk = chunk_for_budget(problem, alpha, b, budget)
    assert 1 <= chunk < b
    with LiveTensorTracker() as tracker:
        res = mg.hypergrad(problem, alpha, "fg2u", b=b, seed=3, memory_budget=budget)
    assert tracker.peak <= budget, (tracker.peak, budget, chunk)
    assert torch.allclose(res.grad["logit"], full.grad["logit"], rtol=1e-10, atol=1e-14)


def test_memory_budget_too_small_is_refused_with_the_need():
    problem, alpha = _problem()
    with pytest.raises(mg.MemoryBudgetError, match="memory_budget"):
        mg.hypergrad(problem, alpha, "fg2u", b=4, seed=0, memory_budget=1000)
    with pytest.raises(mg.ConfigError, match="either chunk"):
        mg.hypergrad(problem, alpha, "fg2u", b=4, seed=0, memory_budget=10**9, chunk=2)


@pytest.mark.parametrize("method,options", [("rmd", {}), ("greedy", {"gamma": 0.5}),
                                            ("fg2u", {"b": 3, "seed": 0})])
def test_compile_falls_back_with_a_warning_and_the_same_result(monkeypatch, method, options):
    problem, alpha = _problem(T=4)
    ref = mg.hypergrad(problem, alpha, method, **options)

    def broken_compile(fn, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("no C++ compiler (simulated)")
        return run
    monkeypatch.setattr(compiled.torch, "compile", broken_compile)
    compiled._CACHE.clear()
    with pytest.warns(RuntimeWarning, match="metagrad: torch.compile of the .* failed"):
        res = mg.hypergrad(problem, alpha, method, compile=True, **options)
    assert torch.allclose(res.grad["logit"], ref.grad["logit"], rtol=1e-12, atol=1e-15)
    compiled._CACHE.clear()


def test_compile_option_must_be_a_bool():
    problem, alpha = _problem(T=2)
    with pytest.raises(mg.ConfigError, match="compile must be True or False"):
        mg.hypergrad(problem, alpha, "rmd", compile="yes")


@pytest.mark.parametrize("method", ["rmd", "greedy"])
def test_compiled_estimate_equals_the_uncompiled_one(method):
    """The compiled transition computes the same update (a fused ``torch.add(..., alpha=-lr)``
    with a float ``lr`` once came out of ``torch.compile`` as if ``alpha`` were 1; the optimisers
    now fuse only in eager mode)."""
    if not compiled.available():
        pytest.skip("torch.compile is not available")
    from metagrad.tasks.bench_problem import hyper_cleaning_mlp
    problem, alpha = hyper_cleaning_mlp(N=16, hidden=3, T=3, batch=16, lr=0.1)  # float32
    ref = mg.hypergrad(problem, alpha, method)
    compiled._CACHE.clear()
    res = mg.hypergrad(problem, alpha, method, compile=True)
    rel = float((res.grad["logit"] - ref.grad["logit"]).norm() / ref.grad["logit"].norm())
    assert rel <= 1e-5, rel  # float32 rounding (the broken update gave 0.2 here)
    compiled._CACHE.clear()


def test_outer_loop_validates_the_problem_once_per_start_and_alpha_every_step(monkeypatch, tmp_path):
    """Validation evaluates both losses (on the few-shot page 40 % of an FO step): the outer loop
    does it on the first step of a run or a resume only, and still refuses a non-finite α later."""
    from metagrad.loops import OuterConfig, outer_loop
    from metagrad.problem import BilevelProblem
    calls = []
    original = BilevelProblem.validate
    monkeypatch.setattr(BilevelProblem, "validate", lambda self, a: (calls.append(1), original(self, a))[1])
    problem, alpha = _problem(T=3)
    ck = tmp_path / "run.pt"
    outer_loop(lambda s: problem, alpha, OuterConfig("rmd", steps=2, checkpoint_every=1), checkpoint=ck,
               progress=False)
    assert len(calls) == 1
    outer_loop(lambda s: problem, alpha, OuterConfig("rmd", steps=4, checkpoint_every=1), progress=False)
    assert len(calls) == 2
    nan_after_one = lambda a: {k: v * float("nan") for k, v in a.items()}  # noqa: E731
    with pytest.raises(mg.ConfigError, match=r"alpha\['logit'\] holds .* NaN"):
        outer_loop(lambda s: problem, alpha, OuterConfig("rmd", steps=3), project=nan_after_one, progress=False)
