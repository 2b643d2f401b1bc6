"""The training state: one pytree that a step maps to the next."""

from typing import Any

import flax
import jax
from flax.training import train_state


class TrainState(train_state.TrainState):
  """Params, optimizer state and step (from Flax), plus what a step also needs.

  Attributes:
    batch_stats: BatchNorm running statistics (an empty dict for models
      without BatchNorm).
    rng: the run's root PRNG key. It never changes: each step draws from
      ``fold_in(rng, step)``, so a resumed run draws the same numbers.
    skipped: how many updates ``train.nan_policy=skip`` dropped.
  """

  batch_stats: Any = flax.struct.field(default_factory=dict)
  rng: jax.Array = None
  skipped: jax.Array = 0

  def variables(self, params=None) -> dict:
    """The variables dict for ``apply_fn`` (with ``params`` swapped in if given)."""
    variables = {"params": self.params if params is None else params}
    if self.batch_stats:
      variables["batch_stats"] = self.batch_stats
    return variables


def step_keys(rng: jax.Array, step: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(data-order root key, this step's key), derived from the root key.

  The data stream and the per-step stream come from different halves of one
  split, so ``fold_in(data_root, epoch)`` and ``fold_in(step_root, step)``
  never collide.
  """
  data_root, step_root = jax.random.split(rng)
  return data_root, jax.random.fold_in(step_root, step)
