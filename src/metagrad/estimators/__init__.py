"""Hypergradient estimators, selected by name. See :func:`hypergrad` and :func:`available_methods`."""
from ._registry import Result, register, available_methods, options_of, hypergrad
from . import reverse, forward, greedy, implicit, fomaml  # noqa: F401  (register the estimators)
from .implicit import implicit as implicit_hypergrad, hvp
from .semantics import StructuralZeroWarning
from .forward import fg2u_directions

__all__ = ["Result", "register", "available_methods", "options_of", "hypergrad", "fg2u_directions",
           "implicit_hypergrad", "hvp", "StructuralZeroWarning"]
