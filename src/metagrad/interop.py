r"""torch interop: any ``torch.optim`` optimiser over α, and an autograd bridge.

* :class:`TorchOuter` adapts a ``torch.optim`` optimiser (optionally a learning-rate scheduler
  and gradient-norm clipping) to the pure optimiser protocol, so that
  :func:`~metagrad.loops.outer_loop` accepts ``optimizer=torch.optim.AdamW([...])``.
* :func:`objective` returns :math:`F(\alpha)` as a tensor connected to α's leaves through a
  ``torch.autograd.Function``: ``objective(problem, alpha, "fg2u", b=8).backward()`` writes the
  method's hypergradient into ``alpha[k].grad``, so α can live inside any torch training code.
"""
from __future__ import annotations

from typing import Any

import torch

from ._tree import tree_leaves, tree_map
from .errors import check, ConfigError

__all__ = ["TorchOuter", "objective"]


class _Bridge(torch.autograd.Function):
    @staticmethod
    def forward(ctx, compute, *leaves):
        result = compute()
        ctx.grads = tree_leaves(result.grad)
        ctx.result = result
        return result.loss.detach().clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        return (None, *[grad_out * g for g in ctx.grads])


def objective(problem: Any, alpha: dict, method: str = "rmd", **options) -> torch.Tensor:
    """``F(alpha)`` (a 0-dim tensor) whose ``.backward()`` puts the hypergradient of ``method``
    (with ``options``, as in :func:`~metagrad.estimators._registry.hypergrad`) into the ``.grad`` of α's leaves.

    The estimate is computed once, in the forward call; the backward pass scales it by the
    incoming gradient (so ``(2 * objective(...)).backward()`` doubles it). Leaves that do not
    require grad are skipped. Not differentiable twice.
    """
    from .estimators import hypergrad
    check(isinstance(alpha, dict) and len(alpha) > 0, "alpha must be a non-empty dict of tensors")
    detached = tree_map(lambda x: x.detach(), alpha)
    return _Bridge.apply(lambda: hypergrad(problem, detached, method, **options), *tree_leaves(alpha))


class TorchOuter:
    """A ``torch.optim`` optimiser over α in the pure protocol (``init`` / ``hyper`` / ``step``).

    ``optimizer`` must have been built over α's own leaf tensors (``torch.optim.Adam(alpha.values())``);
    each ``step`` copies α into them, sets their ``.grad`` to the hypergradient, clips the
    global norm to ``clip_grad_norm`` (if given), steps the optimiser and the scheduler, and
    returns the new α (detached copies). The "buffers" are the state dicts (checkpointed)."""

    def __init__(self, optimizer, alpha: dict, scheduler=None, clip_grad_norm: float | None = None):
        check(isinstance(optimizer, torch.optim.Optimizer),
              f"optimizer must be a torch.optim.Optimizer over alpha's tensors, got {type(optimizer).__name__}")
        check(clip_grad_norm is None or (isinstance(clip_grad_norm, (int, float)) and clip_grad_norm > 0),
              f"clip_grad_norm must be a number > 0, got {clip_grad_norm!r}")
        mine = {id(p) for group in optimizer.param_groups for p in group["params"]}
        leaves = tree_leaves(alpha)
        if not leaves or any(id(x) not in mine for x in leaves):
            raise ConfigError("the torch optimizer must be built over alpha's own tensors, e.g. "
                              "alpha = {'lr': torch.tensor(0.1, requires_grad=True)}; "
                              "opt = torch.optim.Adam(alpha.values(), lr=1e-2); outer_loop(..., alpha, ..., "
                              "optimizer=opt)")
        self.optimizer, self.scheduler, self.clip = optimizer, scheduler, clip_grad_norm
        self.alpha, self.params = alpha, leaves

    def describe(self) -> dict:
        """What identifies this outer optimiser in a checkpoint key."""
        return {"torch_optimizer": type(self.optimizer).__name__,
                "defaults": {k: repr(v) for k, v in sorted(self.optimizer.defaults.items())},
                "scheduler": type(self.scheduler).__name__ if self.scheduler else None,
                "clip_grad_norm": self.clip}

    def init(self, alpha: dict) -> dict:
        return self._state()

    def hyper(self, alpha: dict) -> dict:
        return {}

    def load(self, state: dict) -> None:
        """Restore the optimiser and scheduler from a checkpoint's buffers."""
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])

    def _state(self) -> dict:
        return {"optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None}

    def step(self, alpha, state, grad, hp, t):
        with torch.no_grad():
            for p, a in zip(self.params, tree_leaves(alpha)):
                p.copy_(a)
        for p, g in zip(self.params, tree_leaves(grad)):
            p.grad = g.detach().to(dtype=p.dtype, device=p.device).clone()
        if self.clip is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.optimizer.step()
        if self.scheduler is not None:
            self.scheduler.step()
        return tree_map(lambda p: p.detach().clone(), self.alpha), self._state()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])
