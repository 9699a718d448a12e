r"""First-order MAML (``fomaml``): :math:`\partial w_T/\partial w_0 \approx I`.

.. math:: \hat\nabla F = \nabla_\alpha L_{val}(w_T, \alpha)
          + \Big(\frac{\partial w_0}{\partial \alpha}\Big)^{\!\top} \nabla_{w} L_{val}(w_T, \alpha)

Finn et al. 2017, §5.2 ("first-order approximation"); learn2learn's ``MAML(first_order=True)``
and higher's ``track_higher_grads=False`` compute the same quantity. Unlike ``fo`` it keeps the
learned initialisation's path; like ``fo`` it drops how the inner steps depend on α (a learned
learning rate gets zero, with a :class:`~metagrad.estimators.semantics.StructuralZeroWarning`).
"""
from __future__ import annotations

from torch.func import vjp

from .._tree import tree_add, tree_detach
from .. import unroll
from ._registry import register

__all__ = ["fomaml"]


@register("fomaml")
def fomaml(problem, alpha, cost):
    r"""First-order MAML: the outer gradient at :math:`w_T` sent straight to :math:`w_0(\alpha)`.
    Cost: T steps + 1 outer gradient + 1 VJP through the initialisation. Memory: O(P + N)."""
    alpha = tree_detach(alpha)
    state = unroll.run(problem, alpha, cost=cost)
    value, gw, ga = unroll.outer_value_and_grads(problem, state[0], alpha, cost)
    if problem.learned_init:
        _, init_vjp = vjp(problem.w0, alpha)
        cost.vjps += 1
        ga = tree_add(ga, init_vjp(gw)[0])
    return ga, value, state
