"""The language-model loop's pure steps, its on-device windows and evaluation windows.

    state, metrics = lm_train_step(state, {"x": (B, T) tokens, "y": (B, T) next tokens})

The training split lives on the device as one token array; an "example" is a
window of T + 1 tokens in a tiling of the text whose phase moves every epoch,
and each batch's windows are sliced on the device inside the jitted chunk.
"""

import math
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxdl.train import accumulate
from jaxdl.train.chunk import make_train_chunk
from jaxdl.train.state import TrainState, step_keys
from jaxdl.utils.errors import JaxdlError

Batch = Mapping[str, jax.Array]

LN2 = math.log(2.0)


def token_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
  """Per-token next-token cross-entropy in nats, float32. (B, T)"""
  return optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)


def lm_train_step(
    state: TrainState,
    batch: Batch,
    *,
    schedule: optax.Schedule | None = None,
    accumulate_steps: int = 1,
) -> tuple[TrainState, dict[str, jax.Array]]:
  """One optimizer step on next-token prediction over ``{"x": (B, T), "y": (B, T)}``.

  Dropout draws from ``fold_in(key, state.step)``: the same state and batch
  give the same result.

  Args:
    state: the current state (a model that maps tokens (B, T) to logits (B, T, V)).
    batch: input tokens and the tokens that follow each of them.
    schedule: if given, the learning rate is reported in the metrics.
    accumulate_steps: k > 1 averages the gradients of k micro-batches of
      B / k windows before the one update (``jaxdl.train.accumulate``).

  Returns:
    The next state and scalar metrics: ``loss`` (nats per token), ``bpc``
    (bits per character), ``accuracy`` (of the most likely next token),
    ``grad_norm`` (and ``learning_rate``).
  """
  _, key = step_keys(state.rng, state.step)

  def loss_fn(params, carry, part, key):  # on a (micro-)batch of windows
    logits = state.apply_fn(state.variables(params), part["x"], train=True, rngs={"dropout": key})
    correct = (jnp.argmax(logits, axis=-1) == part["y"]).astype(jnp.float32)  # (B, T)
    return token_cross_entropy(logits, part["y"]).mean(), (carry, {"correct": correct}, {})

  (loss, (_, rows, _)), grads = accumulate.value_and_grad(loss_fn, accumulate_steps)(
      state.params, (), {"x": batch["x"], "y": batch["y"]}, key)
  metrics = {
      "loss": loss,
      "bpc": loss / LN2,
      "accuracy": rows["correct"].mean(),
      "grad_norm": optax.tree.norm(grads),
  }
  if schedule is not None:
    metrics["learning_rate"] = jnp.asarray(schedule(state.step), jnp.float32)
  return state.apply_gradients(grads=grads), metrics


def lm_eval_step(state: TrainState, batch: Batch) -> dict[str, jax.Array]:
  """Loss, bits per character and accuracy on windows, with an optional ``mask`` (B,).

  Args:
    state: the state to evaluate.
    batch: ``{"x": (B, T), "y": (B, T)}`` and optionally ``"mask"`` (B,),
      0 for padding windows.

  Returns:
    Means over the tokens of the unmasked windows (all windows have T
    tokens), and ``count``, the number of unmasked windows.
  """
  logits = state.apply_fn(state.variables(), batch["x"], train=False)  # (B, T, V)
  y = batch["y"]
  mask = batch.get("mask", jnp.ones(y.shape[:1], jnp.float32))
  count = mask.sum()
  per_window = token_cross_entropy(logits, y).mean(axis=1)  # (B,)
  correct = (jnp.argmax(logits, axis=-1) == y).astype(jnp.float32).mean(axis=1)  # (B,)
  loss = (per_window * mask).sum() / jnp.maximum(count, 1.0)
  return {"loss": loss, "bpc": loss / LN2,
          "accuracy": (correct * mask).sum() / jnp.maximum(count, 1.0), "count": count}


def take_windows(tokens: jax.Array, starts: jax.Array, length: int) -> jax.Array:
  """Windows ``tokens[s : s + length]`` for each start s: (B,) -> (B, length)."""
  return jax.vmap(lambda s: jax.lax.dynamic_slice(tokens, (s,), (length,)))(starts)


def window_count(num_tokens: int, seq_len: int) -> int:
  """The windows of ``seq_len + 1`` tokens in one tiling of ``num_tokens`` (see :func:`make_lm_chunk`)."""
  # The last window starts at most at (K - 1) T + T - 1 and ends T + 1 later.
  return num_tokens // seq_len - 1


def make_lm_chunk(
    step_fn: Callable[[TrainState, Batch], tuple[TrainState, dict]],
    *,
    num_tokens: int,
    seq_len: int,
    batch_size: int,
    batch_sharding: jax.sharding.Sharding | None = None,
    nan_policy: str = "halt",
    state_sharding: Any = None,
) -> Callable[[TrainState, jax.Array, jax.Array], tuple[TrainState, dict]]:
  """Builds ``chunk(state, tokens, n)``: ``n`` steps on windows of ``tokens``.

  ``jaxdl.train.chunk.make_train_chunk`` does the work. Its examples are the windows of a
  tiling of the text: window k starts at ``k * seq_len + phase`` and holds
  ``seq_len + 1`` tokens (inputs and their next tokens). Each epoch draws a
  fresh order of the windows and a fresh phase in ``[0, seq_len)``, both from
  the epoch number, so every epoch predicts each character about once, with
  window boundaries that move, and a resumed run sees the same windows.
  Tiling rather than every start position: the permutation of a million
  starts cost a second per chunk on CPU, that of ``N / seq_len`` windows
  costs nothing.

  Args:
    step_fn: ``state, metrics = step_fn(state, {"x": (B, T), "y": (B, T)})``.
    num_tokens: the training split's length.
    seq_len: T, the tokens each window predicts.
    batch_size: B, the global batch.
    batch_sharding: how each batch of windows is laid out over the devices.
    nan_policy: ``train.nan_policy`` (see ``jaxdl.train.chunk.make_chunk``).
    state_sharding: the state's layout, held through the chunk (see
      ``jaxdl.train.chunk.make_chunk``); None: replicated.

  Returns:
    ``chunk(state, tokens, n) -> (state, mean metrics)``, jit-ready, with
    ``chunk.steps_per_epoch`` and ``chunk.num_windows``.
  """
  num_windows = window_count(num_tokens, seq_len)
  if num_windows < batch_size:
    raise JaxdlError(f"the training text holds {max(num_windows, 0)} windows of data.seq_len="
                     f"{seq_len}, fewer than train.batch_size={batch_size}")
  steps_per_epoch = num_windows // batch_size

  def window_step(state, batch):
    data_root, _ = step_keys(state.rng, state.step)
    epoch_key = jax.random.fold_in(data_root, state.step // steps_per_epoch)
    # fold_in(epoch_key, 1): a stream apart from the epoch's permutation key.
    phase = jax.random.randint(jax.random.fold_in(epoch_key, 1), (), 0, seq_len)
    starts = batch["window"] * seq_len + phase  # (B,)
    w = take_windows(batch["tokens"], starts, seq_len + 1)  # (B, T + 1)
    if batch_sharding is not None:
      w = jax.lax.with_sharding_constraint(w, batch_sharding)
    return step_fn(state, {"x": w[:, :-1], "y": w[:, 1:]})

  def chunk(state, tokens, n):
    # The gathered "batch" of the inner chunk is only window indices; the
    # token array rides along by closure, never gathered.
    inner = make_train_chunk(
        lambda s, b: window_step(s, {"tokens": tokens, "window": b["window"]}),
        num_examples=num_windows, batch_size=batch_size, batch_sharding=batch_sharding,
        nan_policy=nan_policy, state_sharding=state_sharding)
    return inner(state, {"window": jnp.arange(num_windows, dtype=jnp.int32)}, n)

  chunk.steps_per_epoch = steps_per_epoch
  chunk.num_windows = num_windows
  return chunk


def eval_windows(tokens: np.ndarray, seq_len: int) -> np.ndarray:
  """Non-overlapping windows (N, T + 1) of a split: every target scored once."""
  n = (len(tokens) - 1) // seq_len
  starts = np.arange(n) * seq_len
  return tokens[starts[:, None] + np.arange(seq_len + 1)[None, :]]
