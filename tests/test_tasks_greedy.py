"""The greedy chapter's tasks: the toy problem of Figure 2 and data hyper-cleaning (Table 2)."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import metagrad as mg
from metagrad.loops import OuterConfig, outer_loop
from metagrad.tasks import hypercleaning as hc
from metagrad.tasks import toy

SMALL = {"digits": (120, 100, 100)}


# ------------------------------------------------------------------------------ toy problem
@pytest.mark.parametrize("T", [1, 5, 20])
def test_toy_exact_gradient_matches_finite_differences_and_rmd(T, device):
    problem, alpha = toy.make_problem(T, device=device)
    alpha = {"alpha": torch.tensor([0.7, -1.3], dtype=torch.float64, device=device)}
    exact = toy.exact_hypergrad(problem, alpha)["alpha"]

    def F(a):
        w = mg.unroll.run(problem, {"alpha": a})[0]["w"]
        return float(toy.val_loss(w))
    h = 1e-6
    fd = torch.tensor([(F(alpha["alpha"] + h * e) - F(alpha["alpha"] - h * e)) / (2 * h)
                       for e in torch.eye(2, dtype=torch.float64, device=device)], dtype=torch.float64)
    assert torch.allclose(exact.cpu(), fd, rtol=1e-6, atol=1e-7)
    rmd = mg.hypergrad(problem, alpha, "rmd").grad["alpha"]
    assert torch.allclose(rmd, exact, rtol=1e-12, atol=1e-12)


def test_toy_greedy_and_t1t2_match_their_closed_forms():
    """B_t = ηG is constant, so greedy = ηG Σ γ^{T-t} ∇L_val(w_t) and T1−T2 = ηG ∇L_val(w_T)."""
    T, gamma = 6, 0.5
    problem, alpha = toy.make_problem(T)
    G, eta = problem.outer_batch["G"], 0.1
    a, w0 = alpha["alpha"], problem.init["w"]
    ws = [a + (1 - eta * G) ** t * (w0 - a) for t in range(T + 1)]
    dl = lambda w: 2 * w + 10 * torch.sin(2 * w)  # noqa: E731
    want = sum(gamma ** (T - t) * eta * G * dl(ws[t]) for t in range(1, T + 1))
    got = mg.hypergrad(problem, alpha, "greedy", gamma=gamma).grad["alpha"]
    assert torch.allclose(got, want, rtol=1e-12)
    assert torch.allclose(mg.hypergrad(problem, alpha, "t1t2").grad["alpha"], eta * G * dl(ws[T]), rtol=1e-12)


def test_toy_run_is_cached_and_cosines_use_common_steps(tmp_path):
    cfg = toy.ToyConfig(scale="test", horizons=(10,), methods=("rmd", "t1t2", "greedy"), gammas=(0.9,),
                        steps=4, results_dir=str(tmp_path))
    res = toy.run(cfg)
    files = sorted(p.name for p in (tmp_path / "test").glob("*.json"))
    assert files == ["T10_greedy0.9_s0.json", "T10_rmd_s0.json", "T10_t1t2_s0.json"]
    assert np.allclose(res.curves[res.curves.key == "rmd"].cosine, 1.0)
    assert toy.cost_check(res).ok.all()
    # every method's mean cosine is over the same leading steps
    k = int(toy.common_steps(res.runs).loc[10])
    assert (res.runs["common steps"] == k).all() and k == res.runs["defined steps"].min()
    for key, g in res.curves.groupby("key"):
        want = float(np.nanmean(g.cosine.to_numpy()[:k]))
        assert res.runs.set_index("key").loc[key, "mean cosine"] == pytest.approx(want)
    payload = json.loads((tmp_path / "test" / "T10_rmd_s0.json").read_text())
    stamp = payload["provenance"]["date"]
    toy.run(cfg)  # loaded, not recomputed
    assert json.loads((tmp_path / "test" / "T10_rmd_s0.json").read_text())["provenance"]["date"] == stamp


# ------------------------------------------------------------------------------ hyper-cleaning
def _cfg(tmp_path, **kw):
    base = dict(scale="test", datasets=("digits",), p_noise=(0.5,), seeds=(0,), sizes=SMALL, steps=3,
                eval_every=0, results_dir=str(tmp_path / "results"), checkpoint_dir=str(tmp_path / "ck"))
    return hc.HyperCleaningConfig(**{**base, **kw})


@pytest.mark.parametrize("p", [0.3, 0.5])
def test_label_corruption_rate_matches_p_noise(p):
    y = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(1))
    noisy, mask = hc.corrupt_labels(y, p, 10, generator=torch.Generator().manual_seed(2))
    assert torch.equal(noisy != y, mask)               # a corrupted label is always wrong
    sd = math.sqrt(p * (1 - p) / len(y))
    assert abs(float(mask.float().mean()) - p) < 4 * sd
    assert noisy.min() >= 0 and noisy.max() <= 9


def test_hypercleaning_builds_on_digits(tmp_path, device):
    cfg = _cfg(tmp_path)
    inst = hc.build(cfg, "digits", 0.5, seed=0, device=device)
    n_tr, n_va, n_te = SMALL["digits"]
    assert inst.train["x"].shape == (n_tr, 1, 8, 8) and inst.val["x"].shape[0] == n_va
    assert inst.test["x"].shape[0] == n_te and inst.alpha0["logit"].shape == (n_tr,)
    assert inst.train["x"].device.type == torch.device(device).type
    assert 0.3 < float(inst.corrupted.float().mean()) < 0.7
    inst.problem.validate(inst.alpha0)
    m = hc.evaluate(inst, inst.alpha0)
    assert m["auroc"] == 0.5 and 0 <= m["test_acc"] <= 1
    # the same seed gives the same draw; the disjoint split keeps the three sets apart
    again = hc.build(cfg, "digits", 0.5, seed=0, device=device)
    assert torch.equal(again.train["x"], inst.train["x"]) and torch.equal(again.corrupted, inst.corrupted)
    from metagrad.data import disjoint_split
    tr, va, te = disjoint_split(1797, SMALL["digits"], seed=0)
    assert not (set(tr.tolist()) & set(va.tolist()) or set(tr.tolist()) & set(te.tolist())
                or set(va.tolist()) & set(te.tolist()))


@pytest.mark.parametrize("method,options", [("rmd", {}), ("greedy", {"gamma": 0.9})])
def test_a_few_outer_steps_reduce_the_validation_loss(tmp_path, method, options):
    cfg = _cfg(tmp_path)
    inst = hc.build(cfg, "digits", 0.5, seed=0)
    before = hc.evaluate(inst, inst.alpha0)["val_loss"]
    hist = outer_loop(lambda s: inst.problem, inst.alpha0,
                      OuterConfig(method=method, options=options, steps=3, lr=0.1), progress=False)
    after = hc.evaluate(inst, hist.alpha)["val_loss"]
    assert after < before


def test_result_file_has_provenance_and_is_reused(tmp_path):
    cfg = _cfg(tmp_path, methods=("none", "greedy"), gammas=(0.9,))
    res = hc.run(cfg)
    path = tmp_path / "results" / "test" / "digits_p0.5_greedy0.9_s0.json"
    payload = json.loads(path.read_text())
    prov = payload["provenance"]
    for key in ("config_hash", "seed", "git_commit", "device", "versions", "wall_time_s", "date"):
        assert key in prov
    assert payload["config"]["method"] == "greedy" and payload["config"]["p_noise"] == 0.5
    assert payload["result"]["steps"] == 3 and payload["result"]["vjps"] == cfg.T
    assert set(res.runs.method) == {"none", "greedy"}
    assert hc.cost_check(res).ok.all()
    assert not list((tmp_path / "ck").rglob("*.pt"))  # checkpoints are removed once saved
    again = hc.run(cfg)
    assert json.loads(path.read_text())["provenance"]["date"] == prov["date"]
    pd.testing.assert_frame_equal(again.runs.drop(columns="run_wall_time_s"),
                                  res.runs.drop(columns="run_wall_time_s"))


def test_resume_from_checkpoint_gives_the_uninterrupted_result(tmp_path):
    cfg = _cfg(tmp_path)
    inst = hc.build(cfg, "digits", 0.5, seed=0)
    ocfg = OuterConfig(method="greedy", options={"gamma": 0.9}, steps=4, lr=0.1, checkpoint_every=2)
    full = outer_loop(lambda s: inst.problem, inst.alpha0, ocfg, progress=False)

    def crashing(step):
        if step == 3:
            raise KeyboardInterrupt("simulated interruption")
        return inst.problem
    ck = tmp_path / "run.pt"
    with pytest.raises(KeyboardInterrupt):
        outer_loop(crashing, inst.alpha0, ocfg, checkpoint=ck, progress=False)
    assert torch.load(ck, weights_only=False)["step"] == 2
    seen = []
    resumed = outer_loop(lambda s: seen.append(s) or inst.problem, inst.alpha0, ocfg, checkpoint=ck,
                         progress=False)
    assert seen == [2, 3]                               # only the unfinished steps are run
    assert torch.allclose(resumed.alpha["logit"], full.alpha["logit"], atol=1e-6)
    assert [r["step"] for r in resumed.records] == [1, 2, 3, 4]


def test_paper_table_is_typed_from_papers_md():
    t = hc.PAPER_TABLE.set_index(["method", "dataset", "p_noise"])
    assert t.loc[("greedy", "mnist", 0.3), "val_acc (paper)"] == 87.06
    assert t.loc[("neumann", "fashion", 0.5), "ci (paper)"] == 1.51
    assert len(hc.PAPER_TABLE) == 16


def test_toy_greedy_sentences_follow_the_tables():
    """The page's greedy paragraph is computed: the sign of the common-step cosine, whether it
    fell from the first steps, and the loss ordering change with the numbers."""
    import pandas as pd

    def tables(cos_common, first5, losses, exact_loss):
        rows = [{"T": 5, "method": "full (RMD)", "final loss": exact_loss, "mean cosine": 1.0}]
        rows += [{"T": 5, "method": f"greedy γ={g:g}", "final loss": v, "mean cosine": cos_common}
                 for g, v in losses.items()]
        prefix = pd.DataFrame([{"T": 5, "method": "greedy γ=0.9", "first 5": first5}]).set_index(["T", "method"])
        return pd.DataFrame(rows), prefix

    s = toy.greedy_sentences(*tables(-0.1, 0.75, {0.9: 14.7, 0.5: 9.8, 0.3: 9.1}, 8.9))
    assert "-0.100 at T = 5, negative at every horizon" in s["common"]
    assert "lower on the common steps than over the first 5 steps at every horizon" in s["drift"]
    assert s["first"] == "0.750 at T = 5"
    assert "Every greedy run ends above the exact method at T = 5." in s["loss"]
    assert "grows with γ at T = 5" in s["loss"]
    s = toy.greedy_sentences(*tables(0.9, 0.5, {0.9: 8.0, 0.5: 9.8, 0.3: 9.1}, 8.9))
    assert "positive at every horizon" in s["common"] and "not lower" in s["drift"]
    assert "No horizon has every greedy run ending above" in s["loss"]
    assert "At no horizon does the final loss grow with γ" in s["loss"]
    s = toy.greedy_sentences(*tables(0.9, float("nan"), {0.9: 9.0}, 8.9))
    assert s["first"].startswith("not defined")
