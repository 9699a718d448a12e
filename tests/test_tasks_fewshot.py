"""Few-shot meta-learning task (metagrad.tasks.fewshot): model split, exact hypergradients on a
tiny net, episode labels, the official one-shot-run evaluation, resume and caching."""
from __future__ import annotations

import math
import os
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import metagrad as mg
import metagrad.loops
from metagrad import unroll
from metagrad._tree import flatten, unflatten
from metagrad.data import OneShotRun
from metagrad.errors import ConfigError
from metagrad.tasks import fewshot as fs


def tiny_cfg(**kw):
    base = dict(scale="test", data="digits", settings=((1, 2),), seeds=(0,), depth=6, width=2,
                image_size=8, n_query=3, meta_batch=2, T=3, outer_steps=4, outer_lr=1e-2, n_select=3,
                n_test=4, eval_chunk=2, oneshot_runs=False, device="cpu", dtype="float64",
                checkpoint_every=1)
    base.update(kw)
    return fs.FewShotConfig(**base)


def fake_data(cfg, n_classes=10, n_examples=8, seed=0, noise=0.001):
    """Images whose pixels equal (class + 1) / 100 plus uniform noise in [0, ``noise``): with
    the default small noise the class can be read back from the image."""
    g = torch.Generator().manual_seed(seed)
    s = cfg.image_size
    cls = torch.arange(n_classes, dtype=torch.float64).view(-1, 1, 1, 1, 1)
    images = ((cls + 1) / 100 + noise * torch.rand(n_classes, n_examples, 1, s, s, generator=g,
                                                   dtype=torch.float64)).to(cfg.torch_dtype)
    train, held = torch.arange(0, 7), torch.arange(7, 10)
    return fs.FewShotData(images.to(cfg.device), train, held, None, "fake", "fake data")


def test_alpha_is_exactly_the_even_conv_layers():
    cfg = tiny_cfg(width=4, image_size=28)
    w, alpha = fs.init_params(cfg, seed=0, n_way=5)
    assert set(alpha) == {f"conv{i}.{p}" for i in (2, 4, 6) for p in ("weight", "bias")}
    assert set(w) == {f"conv{i}.{p}" for i in (1, 3, 5) for p in ("weight", "bias")} | {"head.weight", "head.bias"}
    assert w["head.weight"].shape == (5, 4 * 3 * 3)  # 28 -> 14 -> 7 -> 3 after the three pools
    assert float(w["head.weight"].abs().sum()) == 0.0  # zero head: uniform prediction at w0
    # every hyper layer is used by the forward pass (its gradient is not identically zero)
    w = {k: (torch.randn_like(v) if k.startswith("head") else v) for k, v in w.items()}
    x = torch.rand(3, 1, 28, 28, dtype=torch.float64)
    g = torch.func.grad(lambda a: fs.forward(w, a, x).square().sum())(alpha)
    assert all(float(g[f"conv{i}.weight"].abs().sum()) > 0 for i in (2, 4, 6))
    # the inner optimiser never touches alpha: the state holds w's keys only
    problem = fs.make_problem(cfg, w, {"x": x[None], "y": torch.zeros(1, 3, dtype=torch.long)},
                              {"x": x[None], "y": torch.zeros(1, 3, dtype=torch.long)})
    state = unroll.run(problem, alpha)
    assert set(state[0]) == set(w)


def test_vectorised_and_looped_task_logits_agree(device):
    cfg = tiny_cfg(device=str(device), width=3)
    gen = torch.Generator().manual_seed(0)
    w0, alpha = fs.init_params(cfg, 0, 4)
    w = {k: torch.randn((3, *v.shape), generator=gen, dtype=v.dtype).to(device) for k, v in w0.items()}
    x = torch.rand(3, 5, 1, 8, 8, generator=gen, dtype=torch.float64).to(device)
    looped = fs.task_logits(w, alpha, x, vectorize=False)
    assert looped.shape == (3, 5, 4)
    assert torch.allclose(fs.task_logits(w, alpha, x, vectorize=True), looped, rtol=1e-10, atol=1e-12)
    assert torch.allclose(looped[1], fs.forward({k: v[1] for k, v in w.items()}, alpha, x[1]))


def _problem(cfg, data, seed=0, step=0, way=2, shot=1):
    """A meta-batch problem at a generic point: random head and biases (with zero biases a
    channel dead everywhere makes the next pre-activation exactly 0, on the ReLU kink, where
    finite differences are one-sided)."""
    w0, alpha = fs.init_params(cfg, seed, way)
    gen = torch.Generator().manual_seed(3)
    jitter = lambda d: {k: (v + 0.1 * torch.randn(v.shape, generator=gen, dtype=v.dtype).to(v.device)  # noqa: E731
                                  if k.endswith("bias") or k.startswith("head") else v) for k, v in d.items()}
    w0, alpha = jitter(w0), jitter(alpha)
    tasks = fs.training_tasks(cfg, data, shot, way, seed, step)
    return fs.make_problem(cfg, w0, *fs.stack_tasks(tasks)), alpha, w0, tasks


def test_rmd_matches_fmd_and_finite_differences_float64(device):
    cfg = tiny_cfg(device=str(device), meta_batch=1)
    data = fake_data(cfg, noise=1.0)  # textured images: ReLU / max-pool kinks are rarer
    problem, alpha, _, _ = _problem(cfg, data)
    rmd = mg.hypergrad(problem, alpha, "rmd")
    fmd = mg.hypergrad(problem, alpha, "fmd")
    g_r, g_f = flatten(rmd.grad), flatten(fmd.grad)
    assert float(g_r.norm()) > 0
    assert torch.allclose(g_r, g_f, rtol=1e-9, atol=1e-12)
    # central finite difference of F along two random directions (a small step: the net is
    # piecewise smooth, ReLU and max-pool kinks lie within ~1e-5 of alpha)
    F = lambda a: problem.outer_loss(unroll.run(problem, a)[0], a, problem.outer_batch)  # noqa: E731
    gen = torch.Generator().manual_seed(1)
    for _ in range(2):
        v = torch.randn(g_r.shape, generator=gen, dtype=torch.float64).to(device)
        eps = 1e-7
        plus = unflatten(flatten(alpha) + eps * v, alpha)
        minus = unflatten(flatten(alpha) - eps * v, alpha)
        fd = (float(F(plus)) - float(F(minus))) / (2 * eps)
        assert math.isclose(fd, float(g_r @ v), rel_tol=1e-5, abs_tol=1e-10)


@pytest.mark.parametrize("method,options", [("rmd", {}), ("greedy", {"gamma": 0.9}), ("neumann", {"K": 2})])
def test_meta_batch_hypergradient_is_the_mean_of_per_task_ones(method, options):
    cfg = tiny_cfg(meta_batch=3)
    data = fake_data(cfg)
    problem, alpha, w0, tasks = _problem(cfg, data)
    batched = flatten(mg.hypergrad(problem, alpha, method, **options).grad)
    singles = [flatten(mg.hypergrad(fs.make_problem(cfg, w0, *fs.stack_tasks([t])), alpha, method,
                                    **options).grad) for t in tasks]
    assert torch.allclose(batched, torch.stack(singles).mean(0), rtol=1e-9, atol=1e-12)


def test_episode_labels_are_consistent():
    cfg = tiny_cfg(meta_batch=4, n_query=3)
    data = fake_data(cfg)
    for shot, way in ((1, 2), (2, 3)):
        tasks = fs.training_tasks(cfg, data, shot, way, seed=5, step=7)
        support, query = fs.stack_tasks(tasks)
        assert support["x"].shape[:2] == (4, shot * way) and query["x"].shape[:2] == (4, cfg.n_query * way)
        for m, t in enumerate(tasks):
            cls_of = lambda x: torch.round(x.flatten(1).mean(1) * 100 - 1).long()  # noqa: E731
            assert torch.equal(t.classes[support["y"][m]], cls_of(support["x"][m]))
            assert torch.equal(t.classes[query["y"][m]], cls_of(query["x"][m]))
            assert set(t.classes.tolist()) <= set(data.train.tolist())  # meta-train classes only
            assert sorted(support["y"][m].tolist()) == sorted(list(range(way)) * shot)
        # the same (seed, step) gives the same tasks; another step gives others
        again = fs.training_tasks(cfg, data, shot, way, seed=5, step=7)
        assert all(torch.equal(a.support_x, b.support_x) for a, b in zip(tasks, again))
        assert not torch.equal(fs.training_tasks(cfg, data, shot, way, seed=5, step=8)[0].query_x, tasks[0].query_x)
        held = fs.held_out_episodes(cfg, data, shot, way, 5, "test")
        assert all(set(t.classes.tolist()) <= set(data.held_out.tolist()) for t in held)
        sel = fs.held_out_episodes(cfg, data, shot, way, 5, "select")
        assert not all(torch.equal(a.query_x, b.query_x) for a, b in zip(held, sel))


def test_oneshot_run_evaluation_on_a_tiny_model():
    cfg = tiny_cfg()
    g = torch.Generator().manual_seed(0)
    runs = []
    for r in range(3):
        support = torch.rand(20, 1, 8, 8, generator=g, dtype=torch.float64)
        perm = torch.randperm(20, generator=g)
        runs.append(OneShotRun(support, support[perm] + 0.01 * torch.rand(20, 1, 8, 8, generator=g,
                                                                          dtype=torch.float64), perm))
    _, alpha = fs.init_params(cfg, 0, 2)
    acc = fs.oneshot_accuracy(cfg, alpha, 0, runs)
    assert 0.0 <= acc <= 1.0
    assert abs(acc * 60 - round(acc * 60)) < 1e-9  # 3 runs x 20 queries
    assert acc > 1 / 20  # queries are near-copies of the supports: better than chance
    assert acc == fs.oneshot_accuracy(cfg, alpha, 0, runs)  # deterministic


@pytest.mark.skipif(not (Path(os.environ.get("METAGRAD_DATA", "~/.cache/metagrad/data")).expanduser()
                         / "omniglot" / "all_runs.zip").is_file(), reason="all_runs.zip not present")
def test_official_oneshot_runs_evaluate():
    from metagrad.data import load_oneshot_runs
    cfg = tiny_cfg(image_size=8, dtype="float32")
    runs = load_oneshot_runs(size=8)
    _, alpha = fs.init_params(cfg, 0, 2)
    acc = fs.oneshot_accuracy(cfg, alpha, 0, runs)
    assert 0.0 <= acc <= 1.0 and abs(acc * 400 - round(acc * 400)) < 1e-4


def test_resume_after_interruption_gives_the_uninterrupted_run(tmp_path, monkeypatch):
    cfg = tiny_cfg(outer_steps=4, checkpoint_every=1)
    data = fake_data(cfg)
    fresh = fs.train(cfg, data, 1, 2, "greedy", 0, gamma=0.9, checkpoint=tmp_path / "fresh.pt")

    real, calls = metagrad.loops.hypergrad, {"n": 0}

    def flaky(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated interruption")
        return real(*a, **k)
    monkeypatch.setattr(metagrad.loops, "hypergrad", flaky)
    with pytest.raises(KeyboardInterrupt):
        fs.train(cfg, data, 1, 2, "greedy", 0, gamma=0.9, checkpoint=tmp_path / "run.pt")
    assert torch.load(tmp_path / "run.pt", weights_only=False)["step"] == 2
    calls["n"] = 10
    resumed = fs.train(cfg, data, 1, 2, "greedy", 0, gamma=0.9, checkpoint=tmp_path / "run.pt")
    assert calls["n"] == 12  # only steps 3 and 4 were computed again
    a = torch.load(tmp_path / "run.pt", weights_only=False)["alpha"]
    b = torch.load(tmp_path / "fresh.pt", weights_only=False)["alpha"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k in ("select_acc", "test_acc", "curve", "jvps", "vjps", "steps"):
        assert resumed[k] == fresh[k], k


def test_run_caches_every_run_and_reuses_it(tmp_path, monkeypatch):
    cfg = tiny_cfg(outer_steps=2, results_dir=str(tmp_path / "res"),
                   checkpoint_dir=str(tmp_path / "ck"), methods=("fo", "greedy", "t1t2"),
                   gammas=(0.9, 0.5), seeds=(0, 1))
    monkeypatch.setattr(fs.experiment, "load_data", lambda c: fake_data(c))
    first = fs.run(cfg)
    assert len(first.runs) == 2 * 4 and len(list((tmp_path / "res" / "test").glob("*.json"))) == 8
    assert set(first.runs.loc[first.runs.method == "greedy", "#JVPs (ours)"]) == {cfg.T}
    assert set(first.runs.loc[first.runs.method == "t1t2", "#JVPs (ours)"]) == {1}
    assert first.chosen_gamma[(1, 2, "base")] in (0.9, 0.5)
    assert not list((tmp_path / "ck").rglob("*.pt"))  # checkpoints are removed once results are saved
    monkeypatch.setattr(fs.experiment, "train", lambda *a, **k: pytest.fail("a finished run was recomputed"))
    second = fs.run(cfg)
    assert second.runs.drop(columns="run_wall_time_s").equals(first.runs.drop(columns="run_wall_time_s"))


def test_greedy_time_sentence_is_worded_from_the_ratio():
    """The page's sentence on greedy's wall time is computed from the table: the ratio to full
    RMD and its reading change with the timings, and a setting without RMD says so."""
    import pandas as pd
    from metagrad.tasks.fewshot.report import greedy_time_sentence

    def table(tg, tr):
        return pd.DataFrame({"shot": [1, 1], "way": [5, 5], "cell": ["base", "base"], "method": ["greedy", "rmd"],
                             "ours": ["greedy γ=0.9", "full RMD"], "s per outer step": [tg, tr]})
    s = greedy_time_sentence(table(0.6, 0.2))
    assert "0.600 s per outer step against 0.200 s for full RMD, 3.00 times as long" in s
    assert "take 67 % of greedy's wall time" in s
    assert "do not make greedy slower" in greedy_time_sentence(table(0.2, 0.3))
    assert greedy_time_sentence(table(0.6, 0.2).iloc[:1]).startswith("No full RMD run")


def test_a_cell_runs_beside_the_base_settings_without_touching_their_runs(tmp_path, monkeypatch):
    """A cell (one setting at other model settings) adds its own runs: the base runs keep their
    files and keys (cached runs are reused when a cell is added), the cell's runs carry its
    name, γ is chosen per cell, and the evidence tells the cells apart."""
    from metagrad import evidence
    cfg = tiny_cfg(outer_steps=2, results_dir=str(tmp_path / "res"), checkpoint_dir=str(tmp_path / "ck"),
                   methods=("fo", "greedy"), gammas=(0.9, 0.5), seeds=(0,))
    monkeypatch.setattr(fs.experiment, "load_data", lambda c: fake_data(c))
    base = fs.run(cfg)
    files = sorted(p.name for p in (tmp_path / "res" / "test").glob("*.json"))
    real_train, trained = fs.experiment.train, []
    monkeypatch.setattr(fs.experiment, "train", lambda c, *a, **k: trained.append(c.outer_steps) or real_train(c, *a, **k))
    with_cell = fs.run(replace(cfg, cells=({"name": "long", "shot": 1, "way": 2, "outer_steps": 3,
                                             "methods": ["greedy"]},)))
    assert trained == [3, 3]  # only the cell's two greedy runs were computed
    new = sorted(p.name for p in (tmp_path / "res" / "test").glob("*.json") if p.name not in files)
    assert all("2way-long__greedy" in n for n in new) and len(new) == 2
    runs = with_cell.runs
    assert set(runs.cell) == {"base", "long"} and set(runs[runs.cell == "long"].steps) == {3}
    assert set(with_cell.chosen_gamma) == {(1, 2, "base"), (1, 2, "long")}
    assert runs[runs.cell == "base"].drop(columns="run_wall_time_s").reset_index(drop=True).equals(
        base.runs.drop(columns="run_wall_time_s"))
    assert set(with_cell.table.dropna(subset=["ours"]).cell) == {"base", "long"}
    assert "cell" in fs.display_table(with_cell, shot=1) and "cell" not in fs.display_table(base, shot=1)
    side = fs.cell_comparison(with_cell)   # greedy in both cells, side by side; FO only in the base
    assert list(side.columns) == ["setting", "method", "cell base", "cell long"]
    assert side.set_index("method").loc["FO", "cell long"] == "" and fs.cell_comparison(base).empty
    ev = evidence.runs("greedy_fewshot", tmp_path / "res" / "test")
    assert set(ev.cell) == {"base", "long"} and set(ev[ev.arm == "greedy"].cell) == {"base", "long"}
    assert set(ev[ev.cell == "long"].arm) == {"greedy0.9", "greedy0.5", "greedy"}


@pytest.mark.parametrize("cell, match", [
    ({"shot": 1, "way": 2}, "each cell must be a dict with a name"),
    ({"name": "base", "shot": 1, "way": 2}, "not 'base'"),
    ({"name": "x", "shot": 1, "way": 2, "n_test": 5}, r"cell 'x': \['n_test'\] cannot be set per cell"),
])
def test_a_bad_cell_is_refused_with_what_to_write(cell, match):
    with pytest.raises(ConfigError, match=match):
        fs.FewShotConfig(cells=(cell,))
