"""A templated language of fact documents: the stand-in for StreamingQA / SQuAD-Seq.

An *entity* has a two-syllable name (``ka ro``) and facts ``attribute → value``; a value is a
two-syllable word from the attribute's own syllable set (``born in`` → a place such as
``mi vel``). A *document* states three facts about one entity, interleaved with filler
sentences drawn from a fixed set of everyday sentences; a *question* is the fact sentence cut
before its value (``ka ro was born in``), its answer the value (two tokens). Everything is
drawn from a seeded ``numpy`` generator, so a corpus is a pure function of its seed.

The names are split once and for all: the *pretraining* half of the name space is used only
to pretrain the base model (which so learns the format), the *stream* half only in the
documents the inner loop adapts to and is evaluated on (whose facts the base model therefore
cannot know).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["VOCAB", "ATTRIBUTES", "Document", "Vocab", "vocab", "names", "make_documents",
           "encode", "em_f1"]

_NAME_SYL = ["ka", "ro", "mi", "ve", "lu", "to", "sa", "ne", "di", "po", "ra", "fe", "zu", "ko",
             "bi", "la"]
#: attribute → (template before the value, syllables of its values)
ATTRIBUTES = {
    "born": ("was born in", ["tar", "vel", "mun", "dor", "sik", "pal", "ren", "gos"]),
    "job": ("works as a", ["ap", "ek", "ot", "ul", "im", "ys", "aw", "eb"]),
    "likes": ("likes to eat", ["bru", "cha", "plo", "sne", "gri", "flo", "tra", "quo"]),
    "pet": ("keeps a pet", ["hax", "jub", "kev", "wim", "yol", "zef", "nup", "qir"]),
    "lives": ("now lives near", ["ost", "wen", "ard", "ilm", "ush", "erk", "alb", "oph"]),
}
_FILLER = [
    "the weather was mild that day", "people often talk about the news", "the market opens early",
    "a long road leads to the hills", "many stories are told at night", "the river is cold in spring",
    "some books are old and some are new", "the town has a quiet square", "it rained for most of the week",
    "children play in the park", "the train was late again", "a small cafe sells bread",
]
_SPECIAL = ["<pad>", "<bos>", ".", "<eos>"]


def _words() -> list[str]:
    words = list(_SPECIAL) + list(_NAME_SYL)
    for template, syl in ATTRIBUTES.values():
        words += template.split() + syl
    for s in _FILLER:
        words += s.split()
    return list(dict.fromkeys(words))


VOCAB = _words()


class Vocab:
    """Word ↔ id of the templated language (``<pad>`` = 0)."""

    def __init__(self, words=VOCAB):
        self.words = list(words)
        self.index = {w: i for i, w in enumerate(self.words)}

    @property
    def bos(self) -> int:
        return self.index["<bos>"]

    @property
    def pad(self) -> int:
        return self.index["<pad>"]

    def __len__(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.index[w] for w in text.split()]

    def decode(self, ids) -> str:
        return " ".join(self.words[int(i)] for i in ids)


def vocab() -> Vocab:
    return Vocab()


def names(part: str) -> list[str]:
    """The two-syllable names of ``part`` (``"pretrain"`` or ``"stream"``): a fixed split of
    the 256 names, every second one to each part."""
    every = [f"{a} {b}" for a in _NAME_SYL for b in _NAME_SYL]
    if part not in ("pretrain", "stream"):
        raise ValueError(f"part must be 'pretrain' or 'stream', got {part!r}")
    return every[0::2] if part == "pretrain" else every[1::2]


@dataclass
class Document:
    """One document: its text, and its questions as (prompt, answer) pairs."""
    entity: str
    text: str
    questions: list


def make_documents(n: int, part: str, seed: int, *, facts: int = 3, fillers: int = 2) -> list[Document]:
    """``n`` documents about distinct entities of ``part`` (names without repetition while
    they last), each with ``facts`` facts and ``fillers`` filler sentences in random order."""
    rng = np.random.default_rng(seed)
    pool = names(part)
    order = rng.permutation(len(pool))
    attrs = list(ATTRIBUTES)
    docs = []
    for i in range(n):
        name = pool[order[i % len(pool)]]
        chosen = rng.choice(len(attrs), size=facts, replace=False)
        sentences, questions = [], []
        for a in chosen:
            template, syl = ATTRIBUTES[attrs[a]]
            value = " ".join(syl[j] for j in rng.integers(0, len(syl), size=2))
            prompt = f"{name} {template}"
            sentences.append(f"{prompt} {value}")
            questions.append((prompt, value))
        sentences += [_FILLER[j] for j in rng.choice(len(_FILLER), size=fillers, replace=False)]
        perm = rng.permutation(len(sentences))
        text = " . ".join(sentences[j] for j in perm) + " ."
        docs.append(Document(name, text, questions))
    return docs


def encode(texts: list[str], voc, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(ids [n, l], lengths [n])``: ``<bos>`` first, right-padded with ``voc.pad`` to the
    longest text ``l`` (an error above ``length``, the context).
    ``voc`` is a :class:`Vocab` or any object with ``encode``, ``bos`` and ``pad``."""
    seqs = [[voc.bos] + voc.encode(t) for t in texts]
    out = torch.full((len(texts), max(map(len, seqs))), voc.pad, dtype=torch.long)
    lengths = torch.zeros(len(texts), dtype=torch.long)
    for i, ids in enumerate(seqs):
        if len(ids) > length:
            raise ValueError(f"text {i} has {len(ids)} tokens, more than context={length}; "
                             f"raise context or lower facts/fillers")
        out[i, :len(ids)] = torch.tensor(ids)
        lengths[i] = len(ids)
    return out, lengths


def em_f1(prediction: str, answer: str) -> tuple[float, float]:
    """SQuAD-style exact match and token F1 of two strings (tokens = words)."""
    p, a = prediction.split(), answer.split()
    em = float(p == a)
    common = sum(min(p.count(t), a.count(t)) for t in set(p))
    if common == 0:
        return em, 0.0
    prec, rec = common / len(p), common / len(a)
    return em, 2 * prec * rec / (prec + rec)
