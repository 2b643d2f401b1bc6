"""Pytree fingerprints: exact identity of parameters across runs."""

import hashlib

import jax
import numpy as np


def tree_sha256(tree) -> str:
  """SHA-256 over every leaf's bytes, in tree order.

  Two runs that end with bit-identical parameters give the same digest; the
  leaf dtype and shape are hashed too, so a reshaped or recast array differs.
  Works on sharded global arrays (it gathers them to the host once).

  Args:
    tree: any pytree of arrays.

  Returns:
    The hex digest.
  """
  digest = hashlib.sha256()
  for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
    array = np.asarray(jax.device_get(leaf))
    digest.update(jax.tree_util.keystr(path).encode())
    digest.update(str(array.dtype).encode())
    digest.update(str(array.shape).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
  return digest.hexdigest()


def param_count(tree) -> int:
  """Total number of scalars in a pytree of arrays."""
  return int(sum(np.prod(np.shape(x)) for x in jax.tree_util.tree_leaves(tree)))
