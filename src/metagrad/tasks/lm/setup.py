r"""The configuration, the base model (pretrained once, cached), and the bilevel problem.

One outer step (CaMeLS, as the (FG)²U paper runs it): draw ``depth`` new documents; starting
from the base model :math:`w_0`, take one SGD step per document on the token-weighted loss

.. math:: L_{train}(w, \alpha; x) = \frac1n \sum_i \omega_i(\alpha)\, \mathrm{CE}_i(w; x),
          \qquad \omega(\alpha) = n\cdot\mathrm{softmax}(g_\alpha(h(x))),

(:math:`h` the frozen base model's token features, :math:`g_\alpha` the weighting model);
the outer loss is the answers' negative log-likelihood for the questions about those
documents plus the locality term :math:`c_{loc}\,\mathrm{KL}(p_{w_0}\,\|\,p_{w_T})` on
unrelated text (CaMeLS's regulariser).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ... import BilevelProblem, SGD, from_module
from ...config import config_from_params, resolve_device
from ...errors import check, ConfigError
from ...results import cached, repo_root
from .corpus import Vocab, encode, make_documents
from .model import TinyLM, TokenWeighter, load_gpt2, load_state, next_token_losses, pretrain, save_state, token_weights

__all__ = ["LMConfig", "Base", "base_model", "Instance", "problem_at", "adapt", "answer_scores"]

#: Table 2 and §5 of the (FG)²U paper (PAPERS.md A.3); ≈: read off the figure.
PAPER = {"rmd": {1: 11.9, 2: 12.55, 4: 12.87, 6: 12.94}, "fg2u": {24: 13.46, 48: 13.70},
         "memory_GiB": {"rmd@6": 38.0, "fg2u@24/48": "10.7–11.5"},
         "table2": {"StreamingQA": {"rmd": (2.04, 5.53), "fg2u": (2.22, 6.37)},
                    "SQuAD-Seq": {"rmd": (1.52, 3.16), "fg2u": (1.72, 3.50)}}}


@dataclass(frozen=True)
class LMConfig:
    """Everything that defines the page. ``rmd_extra_depths``: RGU beyond the memory budget
    (exploratory: the paper could not run them; no claim uses them). ``base_model``: ``"tiny"`` (pretrained here) or
    ``"distilgpt2"`` / ``"gpt2"`` loaded from ``base_model_path`` (or ``$METAGRAD_GPT2_PATH``)."""
    scale: str = "smoke"
    seeds: tuple = (0, 1)
    rmd_depths: tuple = (1, 2)
    rmd_extra_depths: tuple = ()
    fg2u_depths: tuple = (4,)
    fg2u_b: int = 4
    steps: int = 4
    outer_lr: float = 0.05
    inner_lr: float = 0.3
    c_loc: float = 0.1
    locality_docs: int = 4
    outer_questions: int = 12
    eval_streams: int = 1
    eval_length: int = 8
    memory_rmd_depths: tuple = (1, 2, 4)
    memory_fg2u_depths: tuple = (1, 4)
    memory_budget_depth: int = 2
    weight_hidden: int = 0
    base_model: str = "tiny"
    base_model_path: str | None = None
    width: int = 64
    layers: int = 2
    heads: int = 2
    context: int = 48
    pretrain_docs: int = 2000
    pretrain_steps: int = 150
    pretrain_batch: int = 32
    pretrain_lr: float = 3e-3
    device: str = "auto"
    checkpoint_every: int = 10
    results_dir: str = "results/fg2u_lm"
    checkpoint_dir: str = "checkpoints/fg2u_lm"

    def __post_init__(self):
        check(self.base_model in ("tiny", "distilgpt2", "gpt2"),
              f"base_model must be 'tiny', 'distilgpt2' or 'gpt2', got {self.base_model!r}")
        for name in ("rmd_depths", "rmd_extra_depths", "fg2u_depths", "memory_rmd_depths", "memory_fg2u_depths"):
            v = getattr(self, name)
            check(all(isinstance(d, int) and d >= 1 for d in v), f"{name} must be integers >= 1, got {v}")
        check(self.memory_budget_depth in self.memory_rmd_depths,
              f"memory_budget_depth={self.memory_budget_depth} must be one of memory_rmd_depths "
              f"{self.memory_rmd_depths} (the budget is RGU's measured peak at that depth)")
        check(self.fg2u_b >= 1 and self.steps >= 1, f"fg2u_b and steps must be >= 1, got {self.fg2u_b}, {self.steps}")
        check(self.inner_lr > 0 and self.outer_lr > 0, "inner_lr and outer_lr must be > 0")

    @classmethod
    def from_params(cls, **params) -> "LMConfig":
        return config_from_params(cls, params)

    def base_key(self) -> dict:
        keys = ("base_model", "base_model_path", "width", "layers", "heads", "context", "pretrain_docs",
                "pretrain_steps", "pretrain_batch", "pretrain_lr")
        return {k: getattr(self, k) for k in keys}

    def run_key(self) -> dict:
        """The fields that define one (method, depth, seed) run's computation."""
        d = asdict(self)
        for k in ("scale", "seeds", "rmd_depths", "rmd_extra_depths", "fg2u_depths", "memory_rmd_depths", "memory_fg2u_depths",
                  "memory_budget_depth", "device", "checkpoint_every", "results_dir", "checkpoint_dir"):
            d.pop(k)
        return d


# ------------------------------------------------------------------------------ the base model
@dataclass
class Base:
    """The frozen base model, its functional view and the tokenizer."""
    model: torch.nn.Module
    net: object          # mg.from_module(model)
    voc: object
    device: torch.device
    pretrain: dict       # the cached result payload (losses, provenance)


class _HFVocab:
    """A Hugging Face tokenizer with the interface of :class:`~.corpus.Vocab`."""

    def __init__(self, tok):
        self.tok = tok

    bos = property(lambda self: self.tok.eos_token_id)
    pad = property(lambda self: self.tok.eos_token_id)

    def encode(self, text):
        return self.tok.encode(" " + text)

    def decode(self, ids):
        return self.tok.decode([int(i) for i in ids]).strip()

    def __len__(self):
        return len(self.tok)


class _HFLM(torch.nn.Module):
    """A GPT-2 with :class:`~.model.TinyLM`'s interface (``features``, ``forward``)."""

    def __init__(self, hf):
        super().__init__()
        self.hf = hf
        self.context = hf.config.n_positions

    def features(self, ids):
        return self.hf.transformer(input_ids=ids).last_hidden_state

    def forward(self, ids):
        return self.hf.lm_head(self.features(ids))


def base_model(cfg: LMConfig, *, progress: bool = True) -> Base:
    """The base model: the tiny LM pretrained on the pretraining half of the corpus (cached:
    ``<results_dir>/<scale>/base_lm.json`` with its provenance and losses, the tensors in
    ``base_lm.pt``, read with ``weights_only=True``), or GPT-2 from a local folder."""
    device = resolve_device(cfg.device)
    if cfg.base_model != "tiny":
        hf, tok = load_gpt2(cfg.base_model_path)
        model = _HFLM(hf).to(device).eval()
        return Base(model, from_module(model, train=False), _HFVocab(tok), device, {})
    voc = Vocab()
    out = repo_root() / cfg.results_dir / cfg.scale
    tensors = out / "base_lm.pt"

    def build():
        torch.manual_seed(0)
        return TinyLM(len(voc), cfg.width, cfg.layers, cfg.heads, cfg.context)

    def compute():
        model = build().to(device)
        docs = make_documents(cfg.pretrain_docs, "pretrain", seed=12345)
        ids, _ = encode([d.text for d in docs], voc, cfg.context)
        losses = pretrain(model, ids, steps=cfg.pretrain_steps, batch=cfg.pretrain_batch, lr=cfg.pretrain_lr,
                          seed=0, log_every=max(1, cfg.pretrain_steps // 5) if progress else 0)
        save_state(model, tensors)
        n = sum(p.numel() for p in model.parameters())
        return {"losses": [round(x, 5) for x in losses], "parameters": n, "tensors": tensors.name}

    payload = cached(out / "base_lm.json", cfg.base_key(), compute, device=str(device))
    if not tensors.is_file():  # the JSON without its tensors: recompute both
        payload = cached(out / "base_lm.json", cfg.base_key(), compute, force=True, device=str(device))
    model = load_state(build(), tensors).to(device)
    for p in model.parameters():
        p.requires_grad_(True)
    return Base(model, from_module(model, train=False), voc, device, payload)


# ------------------------------------------------------------------------------ the problem
@dataclass
class Instance:
    problem: BilevelProblem
    docs: list


def doc_batch(base: Base, texts: list[str], context: int) -> dict:
    """Token ids, the mask of real targets and the frozen base features of the targets."""
    ids, lengths = encode(texts, base.voc, context)
    ids = ids.to(base.device)
    L = ids.shape[1]
    mask = torch.arange(1, L, device=base.device)[None] < lengths.to(base.device)[:, None]
    with torch.no_grad():
        feats = base.model.features(ids)[:, 1:]
    return {"ids": ids, "mask": mask, "feats": feats.detach()}


def qa_batch(base: Base, questions: list, context: int) -> dict:
    """``prompt answer`` sequences with the mask of the answer's target positions."""
    texts = [f"{p} {a}" for p, a in questions]
    ids, lengths = encode(texts, base.voc, context)
    L = ids.shape[1]
    ans = torch.zeros(len(questions), L - 1, dtype=torch.bool)
    for i, (p, a) in enumerate(questions):
        start = 1 + len(base.voc.encode(p))  # first answer token's position
        ans[i, start - 1:lengths[i] - 1] = True
    return {"ids": ids.to(base.device), "ans": ans.to(base.device)}


def losses(base: Base, weighter_net, c_loc: float):
    """``(inner_loss, outer_loss)`` of the problem as pure functions of ``(w, α, batch)``."""
    lm = base.net

    def inner_loss(w, alpha, batch):
        ce, _ = next_token_losses(lm(w, batch["ids"]), batch["ids"])
        omega = token_weights(weighter_net(alpha, batch["feats"]), batch["mask"])
        return (omega * ce).sum() / batch["mask"].sum()

    def outer_loss(w, alpha, batch):
        q = batch["qa"]
        ce, _ = next_token_losses(lm(w, q["ids"]), q["ids"])
        nll = (ce * q["ans"]).sum() / q["ids"].shape[0]
        loc = batch["loc"]
        logp = F.log_softmax(lm(w, loc["ids"])[:, :-1], -1)
        kl = (loc["p0"] * (loc["logp0"] - logp)).sum(-1)
        return nll + c_loc * (kl * loc["mask"]).sum() / loc["mask"].sum()

    return inner_loss, outer_loss


def weighter(cfg: LMConfig, base: Base):
    feat_dim = base.model.tok.weight.shape[1] if cfg.base_model == "tiny" else base.model.hf.config.n_embd
    torch.manual_seed(1)
    mod = TokenWeighter(feat_dim, cfg.weight_hidden).to(base.device)
    return from_module(mod, name="weighter", train=False)


def problem_at(cfg: LMConfig, base: Base, wnet, depth: int, seed: int, step: int) -> Instance:
    """The bilevel problem of outer step ``step``: ``depth`` fresh documents (seeded by
    ``(seed, step)``), their questions, and unrelated text for the locality term."""
    docs = make_documents(depth, "stream", seed=1_000_003 * (seed + 1) + step)
    inner = [doc_batch(base, [d.text], cfg.context) for d in docs]
    # a fixed number of questions, drawn with replacement among those about the documents, so
    # that the outer batch (and its memory) does not grow with the depth
    pool = [q for d in docs for q in d.questions]
    pick = np.random.default_rng(3_000_017 * (seed + 1) + step).integers(0, len(pool), cfg.outer_questions)
    qa = qa_batch(base, [pool[i] for i in pick], cfg.context)
    unrelated = make_documents(cfg.locality_docs, "pretrain", seed=7_000_003 * (seed + 1) + step)
    loc = doc_batch(base, [d.text for d in unrelated], cfg.context)
    with torch.no_grad():
        logp0 = F.log_softmax(base.model(loc["ids"])[:, :-1], -1)
    loc = {"ids": loc["ids"], "mask": loc["mask"], "logp0": logp0, "p0": logp0.exp()}
    inner_loss, outer_loss = losses(base, wnet, cfg.c_loc)
    problem = BilevelProblem(inner_loss, outer_loss, init=base.net.params, optimizer=SGD(lr=cfg.inner_lr),
                             T=depth, inner_batches=lambda t: inner[t], outer_batch={"qa": qa, "loc": loc})
    return Instance(problem, docs)


# ------------------------------------------------------------------------------ evaluation
def adapt(cfg: LMConfig, base: Base, wnet, alpha: dict, docs: list) -> dict:
    """The base model fine-tuned on ``docs`` in order, one SGD step per document on the
    α-weighted loss (the inner loop, without any tape)."""
    inner_loss, _ = losses(base, wnet, cfg.c_loc)
    w = {k: v.detach().clone() for k, v in base.net.params.items()}
    for d in docs:
        batch = doc_batch(base, [d.text], cfg.context)
        g = torch.func.grad(inner_loss)(w, alpha, batch)
        w = {k: w[k] - cfg.inner_lr * g[k] for k in w}
    return w


@torch.no_grad()
def answer_scores(cfg: LMConfig, base: Base, w: dict, questions: list, max_tokens: int = 3) -> dict:
    """Greedy answers (at most ``max_tokens`` tokens, stopping at ``.``) to ``questions``: mean
    exact match and F1 in %, and the answers' mean negative log-likelihood (nats)."""
    from .corpus import em_f1
    voc, lm = base.voc, base.net
    stop = {voc.encode(".")[0]} if hasattr(voc, "index") else set()
    ems, f1s = [], []
    for prompt, answer in questions:
        ids = torch.tensor([[voc.bos] + voc.encode(prompt)], device=base.device)
        out = []
        for _ in range(max_tokens):
            nxt = int(lm(w, ids)[0, -1].argmax())
            if nxt in stop:
                break
            out.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]], device=base.device)], 1)
        em, f1 = em_f1(voc.decode(out), answer)
        ems.append(em)
        f1s.append(f1)
    q = qa_batch(base, questions, cfg.context)
    ce, _ = next_token_losses(lm(w, q["ids"]), q["ids"])
    nll = float((ce * q["ans"]).sum() / len(questions))
    return {"em": 100 * sum(ems) / len(ems), "f1": 100 * sum(f1s) / len(f1s), "answer_nll": nll}


def evaluate(cfg: LMConfig, base: Base, wnet, alpha: dict, seed: int) -> dict:
    """EM / F1 / answer NLL after adapting to ``eval_streams`` held-out streams of
    ``eval_length`` documents (seeded by ``seed``; the same streams for every method)."""
    rows = []
    for s in range(cfg.eval_streams):
        docs = make_documents(cfg.eval_length, "stream", seed=555_557 * (seed + 1) + s)
        w = adapt(cfg, base, wnet, alpha, docs)
        rows.append(answer_scores(cfg, base, w, [q for d in docs for q in d.questions]))
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}
