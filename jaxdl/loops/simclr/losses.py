"""NT-Xent, SimCLR's contrastive loss (Chen et al. 2020, eq. 1).

For a batch of N images with two views each, let ``u_1 .. u_2N`` be the 2N
embeddings normalised to unit length (view 1 of image k is ``u_k``, view 2
is ``u_{N+k}``), ``s_ij = u_i . u_j / tau`` their similarities at
temperature tau, and ``p(i)`` the index of i's other view. Then

    l_i = -log( exp(s_{i,p(i)}) / sum_{k != i} exp(s_ik) )
    L   = (1 / 2N) sum_i l_i

Each view is classified among the 2N - 1 others, its positive being the
other view of its image and the 2N - 2 views of the other images its
negatives. The batch here is global: under ``jit`` with the batch sharded
over devices the similarity matrix spans every device's embeddings (XLA
gathers them), so the loss is the same on one device or eight.
"""

import jax
import jax.numpy as jnp


def _similarities(z1: jax.Array, z2: jax.Array, temperature: float) -> tuple[jax.Array, jax.Array]:
  """The (2N, 2N) logits with the diagonal masked out, and each row's positive (2N,)."""
  z = jnp.concatenate([z1, z2]).astype(jnp.float32)  # (2N, D)
  z = z / jnp.maximum(jnp.linalg.norm(z, axis=1, keepdims=True), 1e-12)
  n2 = z.shape[0]
  logits = z @ z.T / temperature  # (2N, 2N)
  logits = jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, logits)  # a view is not its own candidate
  n = z1.shape[0]
  positives = jnp.concatenate([jnp.arange(n, n2), jnp.arange(n)])  # (2N,)
  return logits, positives


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
  """The NT-Xent loss of two batches of embeddings (N, D), row k of each from image k (scalar, float32)."""
  logits, positives = _similarities(z1, z2, temperature)
  log_p = jax.nn.log_softmax(logits, axis=1)
  return -jnp.take_along_axis(log_p, positives[:, None], axis=1).mean()


def contrastive_accuracy(z1: jax.Array, z2: jax.Array) -> jax.Array:
  """The share of the 2N views whose most similar other view is their positive (scalar)."""
  logits, positives = _similarities(z1, z2, 1.0)
  return (jnp.argmax(logits, axis=1) == positives).mean()
