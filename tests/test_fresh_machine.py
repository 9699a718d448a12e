"""A fresh machine with no data: committed results render without data, the cache can be told
to recompute, provenance flags results whose code changed, and smoke builds stay out of book/."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
import yaml

from _helpers import load_script
from metagrad import provenance, results
from metagrad.results import cached, lookup, repo_root

ROOT = repo_root()


@pytest.fixture
def no_data(tmp_path, monkeypatch):
    empty = tmp_path / "empty-data-root"
    empty.mkdir()
    monkeypatch.setenv("METAGRAD_DATA", str(empty))
    return empty


def _book_params(name: str, drop=()) -> dict:
    p = yaml.safe_load((ROOT / "params" / f"{name}.book.yaml").read_text())
    return {k: v for k, v in p.items() if k not in drop}


def test_fewshot_book_results_need_no_data(no_data):
    from metagrad.tasks import fewshot
    p = _book_params("greedy_fewshot", drop=("expected_rankings",))
    cfg = fewshot.FewShotConfig.from_params(**{k: v for k, v in p.items()
                                              if k in fewshot.FewShotConfig.__dataclass_fields__})
    if fewshot.cached_data(cfg) is None:
        pytest.skip("the committed book-scale few-shot results do not match params/greedy_fewshot.book.yaml")
    res = fewshot.run(cfg)  # would raise DataNotFoundError / ConfigError if it read the data
    assert len(res.runs) > 0 and res.fallback is None
    assert "not needed" in res.data_note


def test_pde_book_results_need_no_data(no_data):
    from metagrad.tasks import pde
    p = _book_params("fg2u_pde", drop=("max_solver_error", "max_eps_nu_numerical"))
    res = pde.run_experiment(pde.PDEConfig(**p))
    assert res.fallback is None, res.fallback  # every run came from a committed file
    assert set(res.sources.values()) == {"file"} and len(res.results) > 0


def test_fewshot_falls_back_to_digits_with_a_banner(no_data, tmp_path):
    from metagrad.tasks import fewshot
    cfg = fewshot.FewShotConfig(data="auto", settings=((1, 5), (1, 10)), methods=("init",), seeds=(0,),
                                depth=2, width=4, outer_steps=1, n_select=2, n_test=2, T=1,
                                results_dir=str(tmp_path / "res"), checkpoint_dir=str(tmp_path / "ck"))
    res = fewshot.run(cfg)
    assert "digits" in res.fallback and "1-shot 10-way" in res.fallback  # 10-way skipped, said so
    assert set(res.runs["way"]) == {5}


def test_pde_falls_back_to_solver_reference_with_a_banner(no_data, tmp_path):
    from metagrad.tasks import pde
    cfg = pde.PDEConfig(scale="t", equations=["kdv"], solvers=["spectral"], seeds=[0], reference="file",
                        steps_spectral=2, n_modes=64, dt=0.02, reference_modes=64,
                        results_dir=str(tmp_path / "res"))
    res = pde.run_experiment(cfg)
    assert res.sources == {"kdv": "solver"}
    assert "KdV.mat" in res.fallback


def test_lookup_and_recompute_window(tmp_path, monkeypatch):
    path, cfg, calls = tmp_path / "r.json", {"a": 1}, []
    compute = lambda: calls.append(1) or {"x": len(calls)}
    cached(path, cfg, compute)
    cached(path, cfg, compute)
    assert len(calls) == 1 and lookup(path, cfg)["result"] == {"x": 1}
    assert lookup(path, {"a": 2}) is None
    monkeypatch.setenv(results.RECOMPUTE_ENV, repr(time.time() + 1))
    assert lookup(path, cfg) is None
    cached(path, cfg, compute)  # recomputed once ...
    monkeypatch.setenv(results.RECOMPUTE_ENV, repr(time.time() - 3600))
    cached(path, cfg, compute)  # ... and then reused: newer than the window
    assert len(calls) == 2
    monkeypatch.setenv(results.RECOMPUTE_ENV, "yesterday")
    with pytest.raises(ValueError, match="METAGRAD_RECOMPUTE_BEFORE"):
        lookup(path, cfg)


def test_provenance_records_code_and_flags_changes(tmp_path, monkeypatch):
    prov = results.provenance({"a": 1})
    code = prov["code"]
    assert "metagrad/unroll.py" in code and "metagrad/problem.py" in code
    assert not any(Path(k).stem in ("report", "results", "provenance") for k in code)
    assert provenance.check(prov)["status"] == "current"
    changed = dict(code, **{"metagrad/unroll.py": "0" * 12})
    verdict = provenance.check(dict(prov, code=changed))
    assert verdict["status"] == "stale" and verdict["changed"] == ["metagrad/unroll.py"]
    gone = dict(code, **{"metagrad/no_such_module.py": "0" * 12})
    assert "removed" in provenance.check(dict(prov, code=gone))["why"]


def test_provenance_of_legacy_files_uses_git(tmp_path):
    if provenance._git("rev-parse", "HEAD") is None:
        pytest.skip("not a git checkout")
    head = provenance._git("rev-parse", "HEAD").strip()
    legacy = {"git_commit": head, "git_dirty": False}
    assert provenance.check(legacy)["status"] in ("current", "stale")  # stale if the tree is modified
    assert provenance.check({"git_commit": "f" * 40})["status"] == "unverifiable"
    assert provenance.check({})["status"] == "unverifiable"


def test_stale_command_lists_and_counts(tmp_path, capsys):
    d = tmp_path / "results" / "exp" / "book"
    results.save_result(d / "new.json", {"a": 1}, {"x": 1})
    payload = json.loads((d / "new.json").read_text())
    payload["provenance"]["code"]["metagrad/unroll.py"] = "0" * 12
    (d / "old.json").write_text(json.dumps(payload))
    assert provenance.main([str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert "stale" in out and "old.json" in out and "new.json" not in out
    assert "2 result files: 1 current, 1 stale" in out
    assert provenance.main([str(tmp_path / "nowhere")]) == 2


def _build_book_module():
    return load_script("build_book")


def test_smoke_builds_never_write_the_published_book(tmp_path, monkeypatch):
    bb = _build_book_module()
    assert bb.book_dir("book") == ROOT / "book" and bb.html_dir("book") == ROOT / "_build" / "html"
    for scale in ("smoke", "paper"):
        assert ROOT / "_build" / scale in bb.book_dir(scale).parents
        assert ROOT / "_build" / scale in bb.html_dir(scale).parents
    monkeypatch.setattr(bb, "ROOT", ROOT)
    bb.stage_sources("smoke")
    staged = bb.source_root("smoke")
    assert (staged / "_toc.yml").resolve() == (ROOT / "_toc.yml").resolve()
    for page in (ROOT / "book").glob("*.md"):
        assert (staged / "book" / page.name).resolve() == page.resolve()
    assert not (staged / "book").is_symlink()  # executed smoke notebooks land here, not in book/


def test_recompute_rejects_unknown_pages():
    bb = _build_book_module()
    with pytest.raises(bb.BuildError, match="not a notebook of the book"):
        bb.main(["--scale", "smoke", "--no-html", "--recompute", "no_such_page"])


def test_hypercleaning_skips_missing_data_with_a_banner(no_data, tmp_path):
    from metagrad.tasks import hypercleaning as hc
    cfg = hc.HyperCleaningConfig.from_params(
        scale="t", datasets=["digits", "mnist"], p_noise=[0.5], methods=["none"], seeds=[0], steps=1,
        eval_every=1, results_dir=str(tmp_path / "res"), checkpoint_dir=str(tmp_path / "ck"))
    res = hc.run(cfg)
    assert set(res.runs["dataset"]) == {"digits"}
    assert "mnist" in res.fallback and "metagrad fetch mnist" in res.fallback


def test_provenance_banner_html():
    html = provenance.banner_html(ROOT / "results" / "greedy_toy" / "book")
    assert "result files made" in html and "Provenance" in html
    assert provenance.banner_html(ROOT / "results" / "no_such_page") == ""


def test_every_params_file_names_only_its_notebooks_parameters():
    """Each params/<page>.<scale>.yaml belongs to a notebook of the book and sets only names its
    `parameters` cell declares (what build_book checks at run time, here for the paper scale too,
    which no CPU build executes)."""
    bb = _build_book_module()
    pages = set(bb.toc_notebooks())
    files = sorted((ROOT / "params").glob("*.yaml"))
    assert files
    for path in files:
        name, scale = path.name.rsplit(".", 2)[:2]
        assert scale in bb.SCALES, f"{path.name}: scale {scale!r} is not one of {bb.SCALES}"
        assert name in pages, f"{path.name}: {name!r} is not a notebook of the book"
        assert isinstance(bb.load_params(name, path, ROOT / "notebooks" / f"{name}.ipynb"), dict)


def test_condensation_params_build_every_row_setup():
    """Every (row, IPC) of the condensation page's book and paper params gives a valid Setup and
    schedule, and so do the two other condensation pages' (a paper-scale mistake would otherwise
    surface only on a GPU)."""
    import yaml
    from metagrad.tasks import condensation as C
    for scale in ("book", "paper"):
        p = yaml.safe_load((ROOT / "params" / f"fg2u_condensation.{scale}.yaml").read_text())
        base = C.Setup(**p["setup_options"])
        for d in p["datasets"]:
            for ipc in p.get("per_dataset", {}).get(d, {}).get("ipcs", p["ipcs"]):
                setup, sched = C._setup_for(base, d, int(ipc), p.get("per_dataset", {}),
                                            {int(k): v for k, v in p["per_ipc"].items()}, p.get("overrides", []))
                assert setup.dataset == C.real_dataset(d, p.get("per_dataset", {})) and sched["steps"] >= 1
    for page in ("fg2u_two_phase", "fg2u_gradient_quality"):  # one Setup each
        for scale in ("book", "paper"):
            p = yaml.safe_load((ROOT / "params" / f"{page}.{scale}.yaml").read_text())
            assert C.Setup(**p["setup_options"]).size >= 4


@pytest.mark.parametrize("page, build", [
    ("greedy_fewshot", "fewshot.FewShotConfig.from_params"),
    ("greedy_hypercleaning", "hypercleaning.HyperCleaningConfig.from_params"),
    ("fg2u_lm", "lm.LMConfig.from_params"),
    ("greedy_toy", "toy.ToyConfig.from_params"),
    ("fg2u_pde", "pde.PDEConfig"),
])
def test_book_and_paper_params_build_the_page_config(page, build):
    """The notebook's parameter defaults overridden by params/<page>.<scale>.yaml give a valid
    configuration of the page's task at book and at paper scale (the names its notebook passes)."""
    import inspect

    import nbformat
    import yaml
    nb = nbformat.read(ROOT / "notebooks" / f"{page}.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    module, *attrs = build.split(".")
    import importlib
    obj = importlib.import_module(f"metagrad.tasks.{module}")
    for a in attrs:
        obj = getattr(obj, a)
    sig = inspect.signature(obj).parameters
    takes_any = any(v.kind is inspect.Parameter.VAR_KEYWORD for v in sig.values())
    for scale in ("book", "paper"):
        path = ROOT / "params" / f"{page}.{scale}.yaml"
        if not path.is_file():
            continue
        ns: dict = {}
        exec(cell.source, {}, ns)  # the notebook's own defaults
        ns.update(yaml.safe_load(path.read_text()) or {})
        cfg = obj(**{k: v for k, v in ns.items() if takes_any or k in sig})
        assert cfg.scale == scale, (page, scale)


def test_a_page_is_executed_again_when_its_result_files_change(tmp_path, monkeypatch):
    """`results_digest` follows the page's own result files (or those of the page it reads) and
    nothing else, so that runs added by scripts/*_units.py are shown by the next `make book`."""
    bb = _build_book_module()
    monkeypatch.setattr(bb, "ROOT", tmp_path)
    folder = tmp_path / "results" / "greedy_fewshot" / "book"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text("{}")
    before = bb.results_digest("greedy_fewshot", "book")
    assert bb.results_digest("greedy_fewshot", "book") == before
    (tmp_path / "results" / "greedy_toy" / "book").mkdir(parents=True)
    (tmp_path / "results" / "greedy_toy" / "book" / "b.json").write_text("{}")
    assert bb.results_digest("greedy_fewshot", "book") == before      # another page's files
    assert bb.results_digest("greedy_fewshot", "smoke") != before     # another scale: none
    (folder / "b.json").write_text("{}")
    added = bb.results_digest("greedy_fewshot", "book")
    assert added != before
    (folder / "b.json").write_text('{"x": 1}')
    assert bb.results_digest("greedy_fewshot", "book") != added       # a changed file
    mem = tmp_path / "results" / "fg2u_memory_time" / "book"
    mem.mkdir(parents=True)
    (mem / "memory.json").write_text("{}")
    assert bb.results_digest("greedy_features", "book") == bb.results_digest("fg2u_memory_time", "book")
