"""Tests of metagrad.tasks.condensation (data condensation, Shen et al. 2024 Table 1).

Tiny configurations of the embedded digits (no data folder needed): 4×4 or 8×8 images, a
depth-1 or depth-2 ConvNet of 2–8 channels, a handful of inner steps.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

import metagrad as mg
from metagrad import unroll
from metagrad._tree import flatten
from metagrad.data import DataNotFoundError
from metagrad.errors import ConfigError
from metagrad.tasks import condensation as C

TINY = dict(dataset="digits", image_size=4, depth=1, width=2, ipc=1, T=3, inner_lr=0.3,
            real_batch=16, pool_size=300, test_size=200, eval_steps=5, norm_eps=1e-3)


def _setup(device="cpu", **changes):
    return C.Setup(**{**TINY, "device": str(device), **changes})


def test_rmd_matches_fmd_on_condensation(device):
    setup = _setup(device, dtype="float64", inner_momentum=0.5, weight_decay=1e-3)
    data = C.load_data(setup)
    alpha = C.initial_images(setup, data, seed=0)
    problem = C.make_problem(setup, data, seed=0, step=0)
    assert alpha["images"].device.type == torch.device(device).type
    exact = flatten(mg.hypergrad(problem, alpha, "rmd").grad)
    forward = flatten(mg.hypergrad(problem, alpha, "fmd", chunk=40).grad)
    assert exact.norm() > 0
    assert torch.allclose(exact, forward, rtol=1e-9, atol=1e-12 * float(exact.abs().max()))


def test_clipping_keeps_images_in_range():
    setup = _setup()
    data = C.load_data(setup)
    records, alpha = C._run_phases(setup, data, [C.Phase("trgu", 5, {"K": 1}, lr=1.0)], seed=0)
    x = alpha["images"]
    assert len(records) == 5 and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert bool((x == 0).any()) and bool((x == 1).any())  # lr=1 pushed pixels onto both bounds
    clipped = C.clip({"images": torch.tensor([-0.5, 0.25, 1.5])})["images"]
    assert clipped.tolist() == [0.0, 0.25, 1.0]


def _expected_meta_loss(setup, data, alpha, n=6):
    """F(α) averaged over n fixed (net init, real batch) draws that training never sees."""
    vals = []
    for k in range(n):
        problem = C.make_problem(setup, data, seed=12345, step=k)
        w = unroll.run(problem, alpha)[0]
        with torch.no_grad():
            vals.append(float(problem.outer_loss(w, alpha, problem.outer_batch)))
    return float(np.mean(vals))


def test_outer_steps_reduce_the_meta_loss():
    setup = _setup(image_size=8, depth=2, width=8, T=5, inner_lr=0.1, real_batch=64, pool_size=1200,
                   test_size=500)
    data = C.load_data(setup)
    alpha0 = C.initial_images(setup, data, seed=0)
    _, alpha = C._run_phases(setup, data, [C.Phase("rmd", 25, {}, lr=0.02)], seed=0)
    before, after = _expected_meta_loss(setup, data, alpha0), _expected_meta_loss(setup, data, alpha)
    assert after < before - 0.02, (before, after)  # seeds 0, 1, 2 give -0.046, -0.036, -0.033


def test_resume_after_interruption_gives_the_same_run(tmp_path):
    setup = _setup()
    data = C.load_data(setup)
    # phase 1 checkpoints every 10 outer steps; the run is stopped at its outer step 12
    phases = [C.Phase("hessian-free", 4, {}, 0.05), C.Phase("fg2u", 14, {"b": 2}, 0.05)]
    ref_records, ref = C._run_phases(setup, data, phases, seed=1)
    calls = {"n": 0}

    def evaluate(alpha, stop_at=None):
        calls["n"] += 1
        if calls["n"] == stop_at:
            raise KeyboardInterrupt
        return {}
    with pytest.raises(KeyboardInterrupt):
        C._run_phases(setup, data, phases, seed=1, evaluate_fn=lambda a: evaluate(a, 4 + 12),
                      eval_every=1, checkpoint_dir=tmp_path)
    assert len(list(tmp_path.glob("*phase0*.pt"))) == 1 and len(list(tmp_path.glob("*phase1*.pt"))) == 1
    calls["n"] = 0
    records, alpha = C._run_phases(setup, data, phases, seed=1, evaluate_fn=evaluate, eval_every=1,
                                   checkpoint_dir=tmp_path)
    assert calls["n"] == 14 - 10  # only the steps after the last checkpoint were run again
    assert torch.equal(alpha["images"], ref["images"])
    assert [r["outer_loss"] for r in records] == [r["outer_loss"] for r in ref_records]
    assert [r["step"] for r in records] == list(range(1, 19))


def test_cifar_without_files_fails_with_the_fetch_command(tmp_path, monkeypatch):
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path))  # an empty data root
    with pytest.raises(DataNotFoundError, match=r"(?s)cifar-10-binary.tar.gz.*metagrad fetch cifar10"):
        C.load_data(C.Setup(dataset="cifar10", depth=3))
    with pytest.raises(DataNotFoundError, match=r"(?s)cifar-100-binary.tar.gz.*metagrad fetch cifar100"):
        C.run_table1(C.Setup(), {"RGU (full)": {"method": "rmd"}}, datasets=("digits", "cifar100"),
                     out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()  # refused before any run


def test_degenerate_depth_is_refused():
    with pytest.raises(ConfigError, match="average every feature map to 0"):
        C.Setup(dataset="digits", image_size=8, depth=3)


def test_paper_table_has_every_cell():
    t = C.PAPER_TABLE1
    assert len(t) == 9 * 5 + 3
    row = t[(t.data == "MNIST") & (t.ipc == 1) & (t.method == "(FG)²U")].iloc[0]
    assert (row.acc, row.pm) == (82.44, 0.68)


def test_fg2u_cosine_follows_lemma_3_1():
    """The cosine of (FG)²U with the exact gradient, averaged over directions, matches
    1/sqrt(1 + (N-1)/b) (first-order consequence of Lemma 3.1) within its sampling error."""
    setup = _setup(dtype="float64")
    data = C.load_data(setup)
    alpha = C.initial_images(setup, data, seed=0)
    problem = C.make_problem(setup, data, seed=0, step=0)
    g = flatten(mg.hypergrad(problem, alpha, "rmd").grad)
    N, b, reps = g.numel(), 8, 40
    cos = [C._cos(flatten(mg.hypergrad(problem, alpha, "fg2u", b=b, seed=s).grad), g) for s in range(reps)]
    expected = C.fg2u_expected_cosine(N, b)
    assert abs(np.mean(cos) - expected) < 4 * np.std(cos) / np.sqrt(reps) + 0.02 * expected, (np.mean(cos), expected)


# ------------------------------------------------------------------ the page's computed prose
def _runs_for_prose(gain_T_ipc1, gain_E_ipc1, gain_T_ipc10, gain_E_ipc10):
    import pandas as pd
    rows = []
    for ipc, (gT, gE) in ((1, (gain_T_ipc1, gain_E_ipc1)), (10, (gain_T_ipc10, gain_E_ipc10))):
        for seed in (0, 1):
            rows.append({"data": "digits", "ipc": ipc, "method": "random real (α₀)", "seed": seed,
                         "test_acc": 50.0 + seed, "test_acc_T": 40.0 + seed, "images": None})
            rows.append({"data": "digits", "ipc": ipc, "method": "RGU (full)", "seed": seed,
                         "test_acc": 50.0 + seed + gE, "test_acc_T": 40.0 + seed + gT,
                         "images": np.zeros((10 * ipc, 1, 8, 8)).tolist() if seed == 0 else None})
    return pd.DataFrame(rows)


def test_adaptation_gains_and_their_conclusion_follow_the_numbers():
    runs = _runs_for_prose(19.7, 21.2, 6.9, -4.2)
    g = C.adaptation_gains(runs).set_index("ipc")
    assert g.loc[1, "gain_T"] == pytest.approx(19.7) and g.loc[1, "gain_E"] == pytest.approx(21.2)
    assert g.loc[10, "gain_E"] == pytest.approx(-4.2)
    assert "depends on the IPC" in C.adaptation_md(C.adaptation_gains(runs))
    both = C.adaptation_md(C.adaptation_gains(_runs_for_prose(5, 1, 6, 2)))
    assert "adapt to the *T*-step training they are optimised for more" in both
    neither = C.adaptation_md(C.adaptation_gains(_runs_for_prose(1, 5, 2, 6)))
    assert "at least as well" in neither and "+1.0 points" in neither
    two = pd.concat([_runs_for_prose(5, 1, 6, 2), _runs_for_prose(1, 5, 2, 6).assign(data="MNIST")])
    text = C.adaptation_md(C.adaptation_gains(two))
    assert text.startswith("On digits, at IPC 1, RGU (full) gains +5.0") and "on MNIST, at IPC 1" in text
    assert text.endswith("depends on the setting.")


def test_n_pixels_counts_the_learned_images_at_the_smallest_ipc():
    assert C.n_pixels(_runs_for_prose(1, 1, 1, 1)) == 10 * 8 * 8


def test_sensitivity_sentence_follows_pass_fail_and_missing():
    import pandas as pd
    sens = pd.DataFrame([
        {"where": {"ipc": 1}, "smallest_effect": 0.01, "effect": 0.212, "p": 1e-4, "passes": True, "detail": ""},
        {"where": {"ipc": 10}, "smallest_effect": 0.01, "effect": -0.04, "p": 0.99, "passes": False, "detail": ""},
        {"where": {"ipc": 50}, "smallest_effect": 0.01, "passes": False, "detail": "not run"}])
    text = C.sensitivity_md(sens)
    assert "At IPC 1 " in text and "+21.2 points" in text and "testable there" in text
    assert "At IPC 10 " in text and "-4.0 points" in text and "*not testable at this scale*" in text
    assert "At IPC 50 the precondition was not run" in text
    sens.at[0, "where"] = {"dataset": "mnist", "ipc": 1}
    assert "At mnist, IPC 1 the exact" in C.sensitivity_md(sens)
    sens.at[1, "where"] = {"dataset": "mnist16", "ipc": 1}
    text = C.sensitivity_md(sens, labels={"mnist": "MNIST", "mnist16": "MNIST 16×16"})
    assert "At MNIST, IPC 1 the exact" in text and "At MNIST 16×16, IPC 1 the exact" in text


def test_row_labels_name_rows_as_the_tables_do():
    base = C.Setup(dataset="digits", image_size=8)
    per_dataset = {"mnist": {"ipcs": [1], "image_size": 28}, "mnist16": {"dataset": "mnist", "image_size": 16, "ipcs": [1]},
                   "mnist14": {"dataset": "mnist", "ipcs": [1]}}
    overrides = [{"dataset": "mnist14", "ipc": 1, "image_size": 14}]
    labels = C.row_labels(base, ["digits", "mnist", "mnist16", "mnist14"], [1, 10], per_dataset, {"1": {"steps": 5}},
                          overrides)
    assert labels == {"digits": "digits", "mnist": "MNIST", "mnist16": "MNIST 16×16", "mnist14": "MNIST 14×14"}


def test_compute_minutes_sums_the_provenance_and_needs_every_file(tmp_path):
    import json
    for name, s in (("digits_ipc1_seed0_trgu", 60.0), ("digits_ipc1_seed0_fg2u", 30.0),
                    ("digits_whole-data_seed0", 30.0), ("digits_ipc10_seed0_trgu", 600.0)):
        (tmp_path / f"{name}.json").write_text(json.dumps({"provenance": {"wall_time_s": s}}))
    assert C.compute_minutes(tmp_path, datasets=["digits"], ipcs=[1], seeds=[0]) == pytest.approx(2.0)
    assert C.compute_minutes(tmp_path, datasets=["digits"], ipcs=[1, 10], seeds=[0]) == pytest.approx(12.0)
    with pytest.raises(FileNotFoundError):
        C.compute_minutes(tmp_path, datasets=["digits"], ipcs=[1], seeds=[0, 1])


def _quality_summary(fg_cos, biased):
    import pandas as pd
    rows = [{"estimator": "RGU (full)", "b": 0, "cos": 1.0, "jvps": 0, "vjps": 10, "wall time s": 0.1}]
    rows += [{"estimator": e, "b": 0, "cos": c, "jvps": 0, "vjps": 2, "wall time s": 0.05} for e, c in biased.items()]
    rows += [{"estimator": "(FG)²U", "b": b, "cos": c, "jvps": 10 * b, "vjps": 0, "wall time s": 0.3 * b}
             for b, c in fg_cos.items()]
    return pd.DataFrame(rows)


def test_crossings_bracket_the_measured_b_and_compare_with_b_match():
    s = _quality_summary({1: 0.03, 64: 0.31, 256: 0.54}, {"HF": 0.38, "TRGU": 0.56, "Neu": 0.54})
    cr = C.crossings(s, 640, biased=["HF", "TRGU", "Neu"]).set_index("estimator")
    assert (cr.loc["HF", "b_below"], cr.loc["HF", "b_above"]) == (64, 256) and cr.loc["HF", "inside"]
    assert cr.loc["HF", "b_match"] == pytest.approx(639 * 0.38 ** 2 / (1 - 0.38 ** 2))
    assert np.isnan(cr.loc["TRGU", "b_above"]) and cr.loc["TRGU", "inside"]  # b_match 292 > 256
    assert not cr.loc["Neu", "inside"]  # reached at 256, formula 265
    text = C.crossings_md(cr.reset_index())
    assert "HF between b = 64 and 256, formula 108" in text and "beyond the largest b measured (256)" in text
    assert text.endswith("for 2 of 3")


def test_time_per_product_ratio_and_its_words():
    s = _quality_summary({1: 0.03, 4: 0.07}, {"HF": 0.38})
    assert C.time_per_product_ratio(s) == pytest.approx((0.3 / 10) / (0.1 / 10))
    assert "costs more wall time than a vector-Jacobian product: 3.00×" in C.jvp_vjp_md(s)
    s.loc[s.estimator == "RGU (full)", "wall time s"] = 1.0
    assert "costs less wall time" in C.jvp_vjp_md(s)


def test_compare_md_follows_the_paired_difference():
    import pandas as pd
    units = [(c, p) for c in range(3) for p in range(3)]
    def q(shift):
        rows = [{"checkpoint": c, "problem": p, "estimator": "TRGU", "b": 0, "cos": 0.5 + 0.1 * ((c + p) % 3)}
                for c, p in units]
        rows += [{"checkpoint": c, "problem": p, "estimator": "greedy", "b": 0,
                  "cos": 0.5 + 0.1 * ((c + p) % 3) + shift + 0.01 * (-1) ** (c + p)} for c, p in units]
        return {"cosines": pd.DataFrame(rows)}
    assert C.compare_md(q(0.0), "greedy", "TRGU").startswith("about as accurate as TRGU")
    assert C.compare_md(q(0.2), "greedy", "TRGU").startswith("more accurate than TRGU")
    assert C.compare_md(q(-0.2), "greedy", "TRGU").startswith("less accurate than TRGU")


def test_lemma_md_follows_the_verdict():
    assert "land on it at every b" in C.lemma_md("reproduced")
    assert "do not all land" in C.lemma_md("contradicted") and "*contradicted*" in C.lemma_md("contradicted")
    assert "not decided" in C.lemma_md("not run")


def test_verdict_of_reads_one_claim_and_names_the_registered_ones():
    import types

    import pandas as pd
    rep = types.SimpleNamespace(verdicts=pd.DataFrame({"id": ["A", "B"], "verdict": ["reproduced", "not run"]}))
    assert C.verdict_of(rep, "B") == "not run"
    with pytest.raises(KeyError, match="registered"):
        C.verdict_of(rep, "C")


def test_recipe_md_follows_the_verdict():
    assert "that is the observation behind" in C.recipe_md("reproduced", acc_two=60, acc_fg2u=50)
    assert "the opposite" in C.recipe_md("contradicted", acc_two=40, acc_fg2u=50)
    undecided = C.recipe_md("not detected at this scale", acc_two=40, acc_fg2u=50)
    assert "not above" in undecided and "neither supports nor contradicts" in undecided
    assert "mean is above" in C.recipe_md("not detected at this scale", acc_two=60, acc_fg2u=50)


def test_table1_cell_schedule_ipcs_and_evaluations_along_the_way(tmp_path):
    """``per_dataset[d]["ipcs"]`` restricts one data set's IPCs; an override can set one cell's
    schedule (steps, eval_every); the evaluations along the way reach the result and the claims'
    evidence as arms ``<arm>@<step>``, equal to the run's final accuracy at its last step."""
    from metagrad import evidence
    base = _setup(image_size=8, depth=2, width=2)
    methods = {"RGU (full)": {"method": "rmd"}, "TRGU": {"method": "trgu", "options": {"K": 1}}}
    runs = C.run_table1(base, methods, datasets=("digits",), ipcs=(1, 2),
                        seeds=(0,), per_dataset={"digits": {"ipcs": [2], "methods": ["RGU (full)"]}},
                        per_ipc={2: {"steps": 7, "lr": 0.05}},
                        overrides=[{"dataset": "digits", "ipc": 2, "steps": 4, "eval_every": 2, "T": 2}],
                        out_dir=tmp_path)
    rgu = runs[runs.method == "RGU (full)"].iloc[0]
    assert set(runs.ipc) == {2} and rgu.steps == 4  # the override's steps beat per_ipc's
    assert "TRGU" not in set(runs.method)            # per_dataset's methods leave it out
    assert [e["step"] for e in rgu.evals] == [2, 4]
    import json
    config = json.loads((tmp_path / "digits_ipc2_seed0_rgu-full.json").read_text())["config"]
    assert config["eval_every"] == 2 and config["setup"]["T"] == 2
    ev = evidence.runs("fg2u_condensation", tmp_path)
    arms = set(ev.arm)
    assert {"rgu", "rgu@2", "rgu@4", "random-real", "whole-data"} <= arms
    last = ev[ev.arm == "rgu@4"].test_acc.iloc[0]
    assert last == pytest.approx(ev[ev.arm == "rgu"].test_acc.iloc[0], abs=1e-6)
    prog = C.progress(runs)  # step 0 = the starting images of the same seed
    assert prog.step.tolist() == [0, 2, 4] and prog.wall_time_s.is_monotonic_increasing
    assert prog.test_acc.iloc[0] == runs[runs.method == "random real (α₀)"].test_acc.iloc[0]
    assert prog.test_acc.iloc[-1] == pytest.approx(rgu.test_acc)
    assert C.plot_progress(prog) is not None and C.plot_progress(prog.iloc[:0]) is None
    two = pd.concat([prog, prog.assign(method="(FG)²U", test_acc=prog.test_acc - [0, 3, 1])])
    text = C.progress_md(two, early=2)
    assert f"{prog.test_acc.iloc[1] - 3:.1f} % after 2 outer steps" in text
    assert "narrows from +3.0 to +1.0 points" in text and "still rising" in text
    assert C.progress_md(prog.iloc[:0]) == "No run of this build was evaluated along the way."
    with pytest.raises(ConfigError, match="unknown setting"):
        C.run_table1(base, {"RGU (full)": {"method": "rmd"}}, datasets=("digits",), ipcs=(1,), seeds=(0,),
                     overrides=[{"dataset": "digits", "ipc": 1, "stpes": 4}], out_dir=tmp_path / "x")
    with pytest.raises(ConfigError, match="not among the methods"):
        C.run_table1(base, methods, datasets=("digits",), ipcs=(1,), seeds=(0,),
                     per_dataset={"digits": {"methods": ["RGU"]}}, out_dir=tmp_path / "y")


def test_evidence_at_step_arm_is_judged_on_the_run_so_far(tmp_path):
    """A run that settles at chance after step 4 has diverged as a whole, but the arm
    "fg2u@4" (the run stopped after 4 steps) has not: its divergence is judged on its own losses."""
    import json
    from metagrad import evidence
    loss = [2.0, 1.9, 1.9, 1.8, 1.8, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3, 2.3]
    result = {"test_acc": 0.2, "test_acc_T": 0.2, "steps": 12, "history": {"outer_loss": loss},
              "evals": [{"step": 4, "test_acc": 0.6, "test_acc_T": 0.5, "phase": 0, "wall_time_s": 1.0},
                        {"step": 12, "test_acc": 0.2, "test_acc_T": 0.2, "phase": 0, "wall_time_s": 3.0}]}
    (tmp_path / "mnist_ipc1_seed0_fg2u.json").write_text(json.dumps(
        {"config": {"seed": 0, "setup": {"ipc": 1}}, "result": result, "provenance": {}}))
    ev = evidence.runs("fg2u_condensation", tmp_path).set_index("arm")
    assert bool(ev.loc["fg2u", "diverged"]) and ev.loc["fg2u", "diverged_reason"] == "at chance"
    assert not bool(ev.loc["fg2u@4", "diverged"]) and ev.loc["fg2u@4", "test_acc"] == 0.6
    assert bool(ev.loc["fg2u@12", "diverged"])


def test_mnist_downsampled_and_image_size_refusals(tmp_path, monkeypatch):
    """``image_size`` below 28 averages MNIST's pixels over blocks (28 → 14: means of 2×2);
    unset means the native size; sizes that cannot be honoured are refused naming the value."""
    import gzip
    (tmp_path / "mnist").mkdir()
    x = np.random.default_rng(0).integers(0, 256, (40, 28, 28), dtype=np.uint8)
    y = (np.arange(40) % 10).astype(np.uint8)
    for name, a in (("t10k-images-idx3-ubyte.gz", x), ("t10k-labels-idx1-ubyte.gz", y)):
        head = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (tmp_path / "mnist" / name).write_bytes(gzip.compress(head + a.tobytes()))
    monkeypatch.setenv("METAGRAD_DATA", str(tmp_path))
    s = C.Setup(dataset="mnist", image_size=14, depth=2, pool_size=30, test_size=10)
    data = C.load_data(s)
    assert data.pool_x.shape[1:] == (1, 14, 14) and "downsampled to 14x14" in data.source
    full = torch.from_numpy(x).float().div(255).unsqueeze(1)
    means = full.reshape(40, 1, 14, 2, 14, 2).mean((3, 5))
    both = torch.cat([data.pool_x, data.test_x])
    assert all(any(torch.allclose(img, m, atol=1e-6) for m in means) for img in both)
    assert C.Setup(dataset="mnist").size == 28 and C.Setup().size == 8
    assert C.Setup(dataset="cifar10", depth=3).size == 32
    for bad, msg in ((dict(dataset="cifar10", image_size=16), "image_size=16 for cifar10"),
                     (dict(dataset="mnist", image_size=56), "MNIST can only be downsampled"),
                     (dict(image_size=0), "got 0")):
        with pytest.raises(ConfigError, match=msg):
            C.Setup(**bad)


def test_a_further_row_of_one_data_set_keeps_its_own_files(tmp_path):
    """A ``datasets`` entry that names a further row (``digits4``: digits at 4×4) runs with its
    ``per_dataset`` settings, in files of its own name, labelled with its size, and compared
    with the paper's row of its data set; the plain row's files are untouched."""
    from metagrad import evidence
    base = _setup(image_size=8, depth=2, width=2)
    methods = {"RGU (full)": {"method": "rmd"}}
    kw = dict(ipcs=(1,), seeds=(0,), out_dir=tmp_path, keep_images_seed=None,
              overrides=[{"dataset": "digits4", "ipc": 1, "steps": 3}, {"dataset": "digits", "ipc": 1, "steps": 2}])
    runs = C.run_table1(base, methods, datasets=("digits", "digits4"),
                        per_dataset={"digits4": {"dataset": "digits", "image_size": 4, "depth": 1}}, **kw)
    assert list(dict.fromkeys(runs.data)) == ["digits", "digits 4×4"]
    from metagrad.results import repo_root  # checkpoints stay beside the results, not in the repository
    assert not (repo_root() / "checkpoints" / tmp_path.name).exists()
    four = runs[(runs.data == "digits 4×4") & (runs.method == "RGU (full)")].iloc[0]
    plain = runs[(runs.data == "digits") & (runs.method == "RGU (full)")].iloc[0]
    assert (four.steps, plain.steps) == (3, 2)
    import json
    cfg = json.loads((tmp_path / "digits4_ipc1_seed0_rgu-full.json").read_text())["config"]["setup"]
    assert (cfg["dataset"], cfg["image_size"], cfg["depth"]) == ("digits", 4, 1)
    assert json.loads((tmp_path / "digits_ipc1_seed0_rgu-full.json").read_text())["config"]["setup"]["image_size"] == 8
    ev = evidence.runs("fg2u_condensation", tmp_path)
    assert set(ev.dataset) == {"digits", "digits4"}
    summary = C.table1_summary(runs)
    assert set(summary["paper (MNIST)"][summary.method == "RGU (full)"]) == {"92.32 ± 0.33"}
    with pytest.raises(ConfigError, match=r"'digits5' is not a data set.*per_dataset\['digits5'\]"):
        C.run_table1(base, methods, datasets=("digits5",), ipcs=(1,), seeds=(0,), out_dir=tmp_path / "z")


def test_an_override_names_the_methods_of_one_cell(tmp_path):
    """``overrides: [{dataset, ipc, methods: [...]}]`` runs those methods in that cell only (the
    row's other IPC keeps its own list); a label that is not a method is refused, naming it."""
    base = _setup(image_size=8, depth=2, width=2)
    methods = {"RGU (full)": {"method": "rmd"}, "TRGU": {"method": "trgu", "options": {"K": 1}}}
    runs = C.run_table1(base, methods, datasets=("digits",), ipcs=(1, 2), seeds=(0,), keep_images_seed=None,
                        per_dataset={"digits": {"methods": ["RGU (full)"]}}, per_ipc={1: {"steps": 2}, 2: {"steps": 2}},
                        overrides=[{"dataset": "digits", "ipc": 1, "methods": ["RGU (full)", "TRGU"]}], out_dir=tmp_path)
    have = {ipc: set(g.method) - {"random real (α₀)", "whole data"} for ipc, g in runs.groupby("ipc")}
    assert have == {1: {"RGU (full)", "TRGU"}, 2: {"RGU (full)"}}
    assert sorted(f.name for f in tmp_path.glob("*trgu*.json")) == ["digits_ipc1_seed0_trgu.json"]
    with pytest.raises(ConfigError, match=r"IPC 1\) names methods \['FG'\]"):
        C.run_table1(base, methods, datasets=("digits",), ipcs=(1,), seeds=(0,), out_dir=tmp_path / "w",
                     overrides=[{"dataset": "digits", "ipc": 1, "methods": ["FG"]}])


def test_directions_table_counts_rho_and_rho_k():
    """ρ = b/(N−1) and ρK per (FG)²U row, N scaled from the kept images to each IPC, the warm
    start left out of K; the paper's row when given."""
    img = np.zeros((10, 1, 4, 4)).tolist()  # N = 160 at IPC 1
    runs = pd.DataFrame([
        {"data": "digits", "ipc": 1, "method": "(FG)²U", "seed": 0, "steps": 100, "warm_start": 0, "images": img},
        {"data": "digits", "ipc": 10, "method": "(FG)²U", "seed": 0, "steps": 100, "warm_start": 20, "images": None},
        {"data": "digits", "ipc": 1, "method": "TRGU", "seed": 0, "steps": 100, "warm_start": 0, "images": img},
        {"data": "MNIST 16×16", "ipc": 1, "method": "(FG)²U b=32", "seed": 0, "steps": 50, "warm_start": 0,
         "images": np.zeros((10, 1, 16, 16)).tolist()}])
    methods = {"(FG)²U": {"method": "fg2u", "options": {"b": 8}}, "(FG)²U b=32": {"method": "fg2u", "options": {"b": 32}},
               "TRGU": {"method": "trgu", "options": {"K": 2}}}
    t = C.directions_table(runs, methods, paper={"N": 7840, "b": 32, "K": 10_000})
    assert t["row"].tolist() == ["digits, IPC 1", "digits, IPC 10", "MNIST 16×16, IPC 1", "paper (MNIST, IPC 1)"]
    assert t["N pixels"].tolist() == [160, 1600, 2560, 7840] and t["K steps"].tolist() == [100, 80, 50, 10_000]
    assert t["ρ = b/(N−1)"].iloc[0] == pytest.approx(8 / 159)
    assert t["ρK"].iloc[1] == pytest.approx(8 / 1599 * 80) and t["ρK"].iloc[3] == pytest.approx(32 / 7839 * 1e4)


def test_directions_md_reads_the_rows_with_more_than_one_b():
    img = np.zeros((10, 1, 4, 4)).tolist()  # N = 160 at IPC 1
    runs = pd.DataFrame([
        {"data": "digits", "ipc": 1, "method": m, "seed": s, "steps": 100, "warm_start": 0, "images": img,
         "test_acc": acc + s} for m, acc in (("(FG)²U", 60.0), ("(FG)²U b=32", 70.0), ("TRGU", 75.0)) for s in (0, 1)]
        + [{"data": "MNIST", "ipc": 1, "method": "(FG)²U", "seed": 0, "steps": 50, "warm_start": 0,
            "images": np.zeros((10, 1, 28, 28)).tolist(), "test_acc": 30.0}])
    methods = {"(FG)²U": {"method": "fg2u", "options": {"b": 8}}, "(FG)²U b=32": {"method": "fg2u", "options": {"b": 32}},
               "TRGU": {"method": "trgu", "options": {"K": 2}}}
    text = C.directions_md(runs, methods)
    assert text == ("On digits, IPC 1, (FG)²U with b = 8 / 32 (ρK ≈ 5.03 / 20.1) reaches 60.5 / 70.5 %; "
                    "TRGU 75.5 %.")
    assert C.directions_md(runs[runs.method != "(FG)²U b=32"], methods) == \
        "No row of this build runs (FG)²U with more than one b."


def test_progress_md_finds_a_label_that_extends_the_method():
    prog = pd.DataFrame([{"data": "MNIST 16×16", "ipc": 1, "method": m, "seed": 0, "step": s, "wall_time_s": s,
                          "test_acc": a} for m, accs in (("(FG)²U b=32", (40, 38, 35)), ("RGU (full)", (40, 42, 45)))
                         for s, a in zip((0, 200, 400), accs)])
    text = C.progress_md(prog)
    assert text.startswith("On MNIST 16×16, IPC 1, (FG)²U b=32 reaches 38.0 % after 200 outer steps and 35.0 % after 400")
    assert "widens from +4.0 to +10.0 points" in text and "narrows" not in text
    assert C.progress_md(prog.assign(method=prog.method.replace({"(FG)²U b=32": "(FG)²Ux"}))) == \
        "No run of this build was evaluated along the way."
