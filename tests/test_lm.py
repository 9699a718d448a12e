"""The language-model page's task code (metagrad.tasks.lm): corpus, exactness of the two
estimators on a tiny instance, the missing-weights error, and memory against depth."""
from __future__ import annotations

import pytest
import torch

import metagrad as mg
from metagrad.errors import ConfigError
from metagrad.tasks.lm import corpus, model as M, setup as S


def _base(width=8, dtype=torch.float64):
    torch.manual_seed(0)
    voc = corpus.Vocab()
    lm = M.TinyLM(len(voc), width=width, layers=1, heads=2, context=48).to(dtype)
    return S.Base(lm, mg.from_module(lm, train=False), voc, torch.device("cpu"), {})


def test_corpus_is_deterministic_and_its_questions_are_answerable_from_their_document():
    a = corpus.make_documents(20, "stream", seed=3)
    b = corpus.make_documents(20, "stream", seed=3)
    assert [d.text for d in a] == [d.text for d in b]
    assert [d.text for d in a] != [d.text for d in corpus.make_documents(20, "stream", seed=4)]
    for d in a:
        assert len(d.questions) == 3
        for prompt, answer in d.questions:
            assert f"{prompt} {answer} ." in d.text  # the fact sentence, cut before its answer
            assert len(answer.split()) == 2
    assert len({d.entity for d in a}) == 20  # distinct entities within a stream
    # the stream's names never occur in the pretraining documents
    assert not set(corpus.names("stream")) & set(corpus.names("pretrain"))
    ids, lengths = corpus.encode([a[0].text], corpus.Vocab(), 48)
    assert corpus.Vocab().decode(ids[0, 1:lengths[0]]) == a[0].text


def test_em_f1():
    assert corpus.em_f1("mi vel", "mi vel") == (1.0, 1.0)
    assert corpus.em_f1("mi tar", "mi vel") == (0.0, 0.5)
    assert corpus.em_f1("", "mi vel") == (0.0, 0.0)


def test_rmd_and_fg2u_on_the_full_scaled_basis_agree_on_a_tiny_instance():
    cfg = S.LMConfig(outer_questions=4, locality_docs=2)
    base = _base()
    wnet = S.weighter(cfg, base)
    alpha = {k: torch.randn(v.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)) * 0.3
             for k, v in wnet.params.items()}
    problem = S.problem_at(cfg, base, wnet, depth=3, seed=0, step=0).problem
    exact = mg.hypergrad(problem, alpha, "rmd").grad
    n = sum(v.numel() for v in alpha.values())
    fg = mg.hypergrad(problem, alpha, "fg2u", directions=n ** 0.5 * torch.eye(n, dtype=torch.float64)).grad
    for k in exact:
        assert exact[k].abs().max() > 1e-8  # a real signal, not two zeros
        torch.testing.assert_close(fg[k], exact[k], rtol=1e-7, atol=1e-10)


def test_missing_gpt2_weights_name_the_path_and_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv(M.GPT2_ENV, raising=False)
    with pytest.raises(ConfigError, match=M.GPT2_ENV):
        M.load_gpt2(None)
    missing = tmp_path / "distilgpt2"
    with pytest.raises(ConfigError, match=str(missing)) as err:
        M.load_gpt2(str(missing))
    assert "base_model_path" in str(err.value) and "save_pretrained" in str(err.value)
    cfg = S.LMConfig(base_model="distilgpt2", base_model_path=str(missing))
    with pytest.raises(ConfigError, match="no GPT-2 weights"):
        S.base_model(cfg)


def test_peak_memory_of_rmd_grows_with_depth_and_fg2us_does_not():
    cfg = S.LMConfig(outer_questions=4, locality_docs=2)
    base = _base(width=16, dtype=torch.float32)
    wnet = S.weighter(cfg, base)

    def peak(method, depth, **opts):
        p = S.problem_at(cfg, base, wnet, depth=depth, seed=0, step=0).problem
        return mg.hypergrad(p, wnet.params, method, track_memory=True, **opts).cost.peak_memory_bytes
    r2, r8 = peak("rmd", 2), peak("rmd", 8)
    f2, f8 = peak("fg2u", 2, b=2, seed=0), peak("fg2u", 8, b=2, seed=0)
    assert r8 > 2.0 * r2, (r2, r8)
    assert f8 < 1.1 * f2, (f2, f8)
    assert f8 < r8


def test_gradient_check_measures_float32_against_a_float64_reference(tmp_path, monkeypatch):
    """The page's gradient check: float64 reference, (FG)²U cosines ≥ 0 in float64 (ĝ·g is a sum
    of squares), float32 compared against it; the base model given is not converted in place."""
    from metagrad.tasks.lm import diagnostics as D
    monkeypatch.setattr(D, "repo_root", lambda: tmp_path)
    cfg = S.LMConfig(outer_questions=4, locality_docs=2, scale="test")
    base = _base(dtype=torch.float32)
    b64 = D.in_dtype(base, torch.float64)
    assert next(base.model.parameters()).dtype == torch.float32
    assert next(b64.model.parameters()).dtype == torch.float64
    rows = D.gradient_check(cfg, base, 2, depths=(2,), draws=3, progress=False)["result"]
    r = rows[0]
    assert len(r["cosines"]) == len(r["cosines_float32"]) == 3
    assert min(r["cosines"]) >= 0 and r["exact_norm"] > 0
    assert 0 <= r["rmd_float32_rel_err"] < 1e-3 and r["rmd_float32_cosine"] > 0.999
    table = D.gradient_table({"result": rows})
    assert {"float32 RGU: relative error", "float32 (FG)²U: mean cosine"} <= set(table.columns)
