r"""Meta-learning token weights for online fine-tuning of a language model (the (FG)²U paper's
CaMeLS experiment, PAPERS.md A.3) at a scale that runs on two CPU cores.

A small causal transformer pretrained on templated fact documents (:mod:`.corpus`,
:mod:`.model`) is fine-tuned on a stream of new documents, one SGD step per document, with a
per-token weight from a weighting model over its frozen token features; the outer loss is the
answers' negative log-likelihood for questions about the documents plus CaMeLS's locality
term (:mod:`.setup`). RGU (``rmd``) and (FG)²U (``fg2u``) meta-learn the weighting model at
several unrolled depths (:mod:`.experiment`); :mod:`.report` draws the page. At paper scale
the base model is DistilGPT2 / GPT-2 from a local folder (``transformers`` optional).
"""
from __future__ import annotations

from .corpus import ATTRIBUTES, Vocab, vocab, names, make_documents, encode, em_f1  # noqa: F401
from .model import TinyLM, TokenWeighter, token_weights, pretrain, save_state, load_state, load_gpt2, GPT2_ENV  # noqa: F401
from .setup import PAPER, LMConfig, Base, base_model, problem_at, adapt, answer_scores, evaluate, weighter  # noqa: F401
from .experiment import LMResult, memory_sweep, train, run, units  # noqa: F401
from .diagnostics import gradient_check, gradient_table  # noqa: F401
from .report import (arm, setup_table, scores_table, paper_table, memory_table, memory_metrics, crossing,  # noqa: F401
                     plot_memory, plot_scores, token_weight_table, plot_token_weights, facts, evidence_rows)

__all__ = ["LMConfig", "LMResult", "PAPER", "TinyLM", "TokenWeighter", "make_documents", "base_model",
           "problem_at", "evaluate", "run", "setup_table", "scores_table", "paper_table", "memory_table",
           "plot_memory", "plot_scores", "plot_token_weights", "token_weight_table", "facts", "evidence_rows",
           "load_gpt2", "em_f1", "gradient_table"]
