"""Model FLOPs for products that stand for more work than they do.

A fast algorithm can compute an operation with fewer multiplications than
the operation has: Winograd's F(2x2, 3x3) computes a 3x3 convolution with
16 products per 2x2 output tile where the convolution has 36 multiply-adds
per tile. ``flops_per_step`` counts model FLOPs (those of the operation, as
MFU needs), not the ones executed, so such code runs its products inside
``stands_for(factor)``, and ``jaxdl.train.cost`` multiplies each product
found under that scope by the factor. The scope is a JAX named scope, so it
survives into the jaxpr of the gradient (``jvp(...)`` and ``transpose(...)``
keep the names).
"""

import re

import jax

_PREFIX = "model_flops_x"
_FACTOR = re.compile(re.escape(_PREFIX) + r"([0-9]+(?:\.[0-9]+)?)")


def stands_for(factor: float):
  """A context in which every matrix product counts ``factor`` times its multiply-adds."""
  return jax.named_scope(f"{_PREFIX}{factor:g}")


def factor_of(name_stack: str) -> float:
  """The factor of the innermost ``stands_for`` scope in a name stack (as ``str(eqn.source_info.name_stack)``), else 1."""
  found = _FACTOR.findall(name_stack)
  return float(found[-1]) if found else 1.0
