"""metagrad — hypergradient estimators for bilevel optimisation.

Describe a problem once, ask for its hypergradient by any method::

    import metagrad as mg
    problem = mg.BilevelProblem(inner_loss, outer_loss, init=w0, optimizer=mg.SGD(lr=0.1), T=100,
                                inner_batches=train, outer_batch=val)
    res = mg.hypergrad(problem, alpha, "fg2u", b=32, seed=0)
    res.grad, res.loss, res.cost
"""
from .problem import BilevelProblem, BlackBoxProblem, minibatches
from .optim import SGD, Momentum, Nesterov, Adam, AdamW, RMSprop, schedule
from .estimators import Result, available_methods, options_of, hypergrad, register, fg2u_directions
from .estimators import implicit_hypergrad as implicit, hvp, StructuralZeroWarning
from .module import from_module, FunctionalModule
from .interop import objective
from .loops import outer_loop, OuterConfig
from .cost import Cost
from .precision import precision_check
from .errors import MetagradError, ConfigError, InnerDivergenceError, MemoryBudgetError

__version__ = "0.1.0"
__all__ = [
    "BilevelProblem", "BlackBoxProblem", "minibatches", "SGD", "Momentum", "Nesterov", "Adam", "AdamW", "RMSprop", "schedule", "Result",
    "available_methods", "options_of", "hypergrad", "register", "fg2u_directions", "Cost",
    "from_module", "FunctionalModule", "implicit", "hvp", "StructuralZeroWarning",
    "objective", "outer_loop", "OuterConfig", "precision_check",
    "MetagradError", "ConfigError", "InnerDivergenceError", "MemoryBudgetError",
]
