"""Hyper-cleaning configuration: per-dataset settings, image pooling and the head's initialisation."""
import pytest
import torch

from metagrad.errors import ConfigError
from metagrad.tasks import hypercleaning as H
from metagrad.tasks.hypercleaning.experiment import _run_cfg


def _cfg(**kw):
    base = dict(datasets=["digits", "mnist"], sizes={"digits": [50, 50, 50], "mnist": [50, 50, 50]}, steps=3)
    return H.HyperCleaningConfig.from_params(**{**base, **kw})


def test_per_dataset_overrides_only_that_dataset():
    cfg = _cfg(per_dataset={"mnist": {"model": "cnn", "image_size": 14, "gammas": [0.9], "steps": 7}})
    m, d = cfg.for_dataset("mnist"), cfg.for_dataset("digits")
    assert (m.model, m.image_size, m.gammas, m.steps) == ("cnn", 14, (0.9,), 7)
    assert d is cfg and d.model == "mlp" and d.steps == 3
    # the run keys differ exactly where the settings do
    assert _run_cfg(m, "mnist", 0.3, "rmd", None, 0)["model"]["model"] == "cnn"
    assert "image_size" not in _run_cfg(d, "digits", 0.3, "rmd", None, 0)["model"]


def test_new_fields_at_their_defaults_keep_old_run_keys():
    key = _cfg().model_key()
    assert "image_size" not in key and "head_init" not in key and "per_dataset" not in key
    assert _cfg(head_init="zero").model_key()["head_init"] == "zero"


@pytest.mark.parametrize("kw, words", [
    (dict(per_dataset={"fashion": {"model": "cnn"}}), "not in datasets"),
    (dict(per_dataset={"mnist": {"T": 3}}), "only"),
    (dict(head_init="normal"), "head_init"),
    (dict(image_size=2), "image_size"),
])
def test_bad_settings_are_refused_by_name(kw, words):
    with pytest.raises(ConfigError, match=words):
        _cfg(**kw)


def test_image_pooling_and_zero_head():
    cfg = _cfg(datasets=["digits"], sizes={"digits": [40, 40, 40]}, model="cnn", image_size=4, head_init="zero",
               device="cpu")
    X = torch.rand(200, 1, 8, 8)
    Y = torch.arange(200) % 10
    inst = H.build(cfg, "digits", 0.3, 0, data=(X, Y))
    assert inst.train["x"].shape[-2:] == (4, 4)
    assert float(inst.problem.init["W"].abs().sum()) == 0.0 and float(inst.problem.init["b"].abs().sum()) == 0.0
    assert float(inst.problem.init["conv0"].abs().sum()) > 0
    logits = H.net(inst.problem.init, inst.val["x"])
    assert torch.allclose(logits, torch.zeros_like(logits))


def test_page_prose_facts_follow_the_setting_not_the_typed_text():
    """The page's 'differences from the paper' and 'still rising' sentences are computed: a CNN
    row at Table 2's schedule reports no network difference; a curve that rises is named."""
    import pandas as pd
    from metagrad.tasks.hypercleaning.report import _difference, still_rising
    cfg = _cfg(per_dataset={"mnist": {"model": "cnn", "head_init": "zero", "steps": 200, "gammas": [0.9]}})
    assert "MLP" in _difference(cfg.for_dataset("digits")) and "3 outer steps" in _difference(cfg.for_dataset("digits"))
    m = _difference(cfg.for_dataset("mnist"))
    assert "MLP" not in m and "outer steps" not in m and "initialised at 0" in m and "0.9} only" in m
    curve = lambda lab, accs: [{"dataset": "mnist", "label": lab, "p_noise": 0.3, "seed": 0, "step": s, "val_acc": a}
                               for s, a in zip((0, 8, 10), accs)]
    result = H.HyperCleaningResult(pd.DataFrame(), pd.DataFrame(curve("up", (0.5, 0.6, 0.7)) + curve("flat", (0.5, 0.7, 0.7))),
                                   {}, 0.0, cfg)
    assert still_rising(result).startswith("mnist: up (")


def test_run_with_every_dataset_missing_reports_the_fallback_instead_of_crashing(tmp_path, monkeypatch):
    from metagrad.tasks.hypercleaning import experiment as E
    monkeypatch.setattr(E, "repo_root", lambda: tmp_path)
    cfg = _cfg(datasets=["mnist"], data_root=str(tmp_path / "empty"), seeds=[0])
    r = H.run(cfg)
    assert r.runs.empty and r.chosen_gamma == {}
    assert "mnist" in r.fallback and "metagrad fetch mnist" in r.fallback


def test_curves_give_a_method_one_colour_in_every_panel():
    """Panels may run different methods (the CNN rows run fewer): a label keeps its colour."""
    import pandas as pd
    from matplotlib.colors import to_hex
    rows = [{"dataset": d, "label": lab, "p_noise": 0.3, "seed": 0, "step": s, "val_acc": 0.5}
            for d, labs in (("digits", ("T1−T2", "greedy γ=0.99", "full (RMD)")), ("mnist", ("T1−T2", "full (RMD)")))
            for lab in labs for s in (1, 2)]
    result = H.HyperCleaningResult(pd.DataFrame({"method": [], "dataset": [], "p_noise": [], "val_acc": []}),
                                   pd.DataFrame(rows), {}, 0.0, _cfg())
    fig = H.plot_curves(result)
    colour = [{ln.get_label(): to_hex(ln.get_color()) for ln in ax.get_lines()} for ax in fig.axes[:2]]
    assert colour[0]["full (RMD)"] == colour[1]["full (RMD)"] and colour[0]["T1−T2"] == colour[1]["T1−T2"]
