"""The base language model, the token-weighting model, pretraining, and GPT-2 at paper scale.

* :class:`TinyLM` — a causal transformer written with ``torch.nn`` (token and position
  embeddings, ``layers`` pre-norm blocks of causal self-attention and an MLP, a tied output
  head). ``features(x)`` is its final normalised hidden state per token.
* :class:`TokenWeighter` — CaMeLS's weighting model at our scale: a small MLP (or a linear map
  when ``hidden = 0``) from the frozen base model's feature of a token to a logit; the weights
  of a document's target tokens are ``2 · sigmoid(logits)`` (in (0, 2)), so a zero output layer
  gives exactly the uniform weights of plain fine-tuning.
* :func:`pretrain` — Adam on the pretraining documents (next-token cross-entropy).
* :func:`load_gpt2` — the paper's base model from a local folder (``transformers`` is optional
  and imported only here).
"""
from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import ConfigError

__all__ = ["TinyLM", "TokenWeighter", "token_weights", "pretrain", "save_state", "load_state",
           "load_gpt2", "GPT2_ENV"]

GPT2_ENV = "METAGRAD_GPT2_PATH"


class Block(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.fc1, self.fc2 = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x):
        n, L, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).split(d, dim=-1)
        q, k, v = (t.reshape(n, L, self.heads, d // self.heads).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(d // self.heads)
        mask = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        x = x + self.proj((att @ v).transpose(1, 2).reshape(n, L, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


class TinyLM(nn.Module):
    """A small causal transformer LM: ``forward(ids [n, L]) -> logits [n, L, V]``."""

    def __init__(self, vocab_size: int, width: int = 64, layers: int = 2, heads: int = 2, context: int = 48):
        super().__init__()
        if width % heads:
            raise ConfigError(f"width={width} must be divisible by heads={heads}")
        self.tok = nn.Embedding(vocab_size, width)
        self.pos = nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(width)
        self.context = context

    def features(self, ids):
        if ids.shape[1] > self.context:
            raise ConfigError(f"sequence of {ids.shape[1]} tokens exceeds context={self.context}")
        x = self.tok(ids) + self.pos(torch.arange(ids.shape[1], device=ids.device))
        for b in self.blocks:
            x = b(x)
        return self.ln(x)

    def forward(self, ids):
        return self.features(ids) @ self.tok.weight.T


class TokenWeighter(nn.Module):
    """Feature of a token → weight logit: ``Linear(d, h) → tanh → Linear(h, 1)``, or
    ``Linear(d, 1)`` when ``hidden = 0``. The output layer starts at zero (uniform weights)."""

    def __init__(self, width: int, hidden: int = 0):
        super().__init__()
        self.net = (nn.Linear(width, 1) if hidden == 0 else
                    nn.Sequential(nn.Linear(width, hidden), nn.Tanh(), nn.Linear(hidden, 1)))
        last = self.net if hidden == 0 else self.net[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)

    def forward(self, feats):
        return self.net(feats).squeeze(-1)


def token_weights(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``2 · sigmoid(logits)`` on each row's target tokens (``mask``), 0 on padding: weights
    in (0, 2), 1 (plain fine-tuning) at logit 0. Bounded, so that no token's step can exceed
    twice the plain one (an unbounded weight lets the inner loop blow up)."""
    return 2 * torch.sigmoid(logits) * mask


def next_token_losses(logits: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy of predicting ``ids[:, 1:]`` and the mask of real targets."""
    tgt = ids[:, 1:]
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tgt.reshape(-1),
                         reduction="none").reshape(tgt.shape)
    return ce, tgt != 0


def pretrain(model: TinyLM, ids: torch.Tensor, *, steps: int, batch: int, lr: float, seed: int,
             log_every: int = 0) -> list[float]:
    """Adam on next-token cross-entropy over random batches of ``ids``; the losses every step."""
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    losses = []
    model.train()
    for step in range(steps):
        idx = torch.randint(0, len(ids), (batch,), generator=gen)
        x = ids[idx].to(next(model.parameters()).device)
        ce, m = next_token_losses(model(x), x)
        loss = (ce * m).sum() / m.sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if log_every and (step + 1) % log_every == 0:
            print(f"pretraining step {step + 1}/{steps}: loss {loss:.3f}", flush=True)
    model.eval()
    return losses


def save_state(model: nn.Module, path: str | Path) -> None:
    """The model's tensors (``state_dict``) to ``path``, atomically; read by :func:`load_state`."""
    import io
    from ...results import atomic_write_bytes
    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_state(model: nn.Module, path: str | Path) -> nn.Module:
    """Load tensors saved by :func:`save_state` (``weights_only=True``: tensors only, no pickle)."""
    state = torch.load(path, weights_only=True, map_location="cpu")
    model.load_state_dict(state)
    return model.eval()


def load_gpt2(path: str | None):
    """``(model, tokenizer)`` of a GPT-2 / DistilGPT2 checkpoint in a local folder.

    The folder comes from ``path`` or the environment variable :data:`GPT2_ENV`; it must hold
    what ``save_pretrained`` writes (``config.json`` and the weights). Nothing is downloaded.
    """
    where = path or os.environ.get(GPT2_ENV)
    how = (f"download DistilGPT2 or GPT-2 on a machine with internet access "
           f"(AutoModelForCausalLM.from_pretrained('distilgpt2').save_pretrained(DIR), the same "
           f"for AutoTokenizer), copy DIR here and pass base_model_path=DIR or set {GPT2_ENV}=DIR")
    if not where:
        raise ConfigError(f"the paper scale needs pretrained GPT-2 weights: no base_model_path given "
                          f"and {GPT2_ENV} is not set; {how}")
    folder = Path(where).expanduser()
    if not (folder / "config.json").is_file():
        raise ConfigError(f"no GPT-2 weights at {folder} (config.json missing); {how}")
    try:
        from transformers import AutoModelForCausalLM, AutoTokenizer
    except ImportError:
        raise ConfigError("the paper scale needs the optional package `transformers` "
                          "(pip install 'metagrad[lm]' or pip install transformers)") from None
    model = AutoModelForCausalLM.from_pretrained(folder, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    return model.eval(), tok
