"""Tree search with mctx over pgx games, batched and inside ``jit``.

The network is the model of the search: the root's prior and value come
from the net on the current positions, and each simulated move steps the
real game (``env.step``), so the tree holds exact positions, as in AlphaZero
(unlike MuZero's learned dynamics). Values are from the side of the player
to move; a move's reward is what the game pays the player who made it, and
the discount is -1 (the next node is the opponent's) or 0 once the game has
ended.
"""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import mctx
import ml_collections


def masked_logits(logits: jax.Array, legal: jax.Array) -> jax.Array:
  """Logits with the illegal moves at the lowest float: they get no prior mass."""
  logits = logits - logits.max(axis=-1, keepdims=True)
  return jnp.where(legal, logits, jnp.finfo(logits.dtype).min)


def make_evaluate_positions(net) -> Callable[[dict, Any], tuple[jax.Array, jax.Array]]:
  """``(variables, states) -> (masked logits (B, A), value (B,))``: the net in inference mode."""

  def evaluate(variables, states):
    logits, value = net.apply(variables, states.observation, train=False)
    return masked_logits(logits, states.legal_action_mask), value

  return evaluate


def make_recurrent_fn(net, env):
  """mctx's ``recurrent_fn``: one simulated move from every node in the batch."""
  evaluate = make_evaluate_positions(net)

  def recurrent_fn(variables, key, action, states):
    del key  # the games are deterministic
    mover = states.current_player
    states = jax.vmap(env.step)(states, action)
    logits, value = evaluate(variables, states)
    reward = states.rewards[jnp.arange(action.shape[0]), mover]
    over = states.terminated | states.truncated
    out = mctx.RecurrentFnOutput(reward=reward, discount=jnp.where(over, 0.0, -1.0),
                                 prior_logits=logits, value=jnp.where(over, 0.0, value))
    return out, states

  return recurrent_fn


def make_search(net, env, s: ml_collections.ConfigDict, *, num_simulations: int, greedy: bool):
  """``search(variables, key, states) -> (action (B,), policy (B, A))``.

  ``policy`` is the search's improved policy, the training target: Gumbel
  MuZero's completed-Q policy, or PUCT's normalised visit counts. With
  ``greedy`` the move is the search's best (Gumbel noise off; PUCT: the most
  visited) instead of a draw, for evaluation.
  """
  evaluate = make_evaluate_positions(net)
  recurrent_fn = make_recurrent_fn(net, env)

  def search(variables, key, states):
    logits, value = evaluate(variables, states)
    root = mctx.RootFnOutput(prior_logits=logits, value=value, embedding=states)
    invalid = ~states.legal_action_mask
    if s.algorithm == "gumbel":
      out = mctx.gumbel_muzero_policy(
          variables, key, root, recurrent_fn, num_simulations, invalid_actions=invalid,
          max_num_considered_actions=s.max_considered_actions, gumbel_scale=0.0 if greedy else s.gumbel_scale)
      return out.action.astype(jnp.int32), out.action_weights
    out = mctx.muzero_policy(
        variables, key, root, recurrent_fn, num_simulations, invalid_actions=invalid,
        dirichlet_fraction=0.0 if greedy else s.dirichlet_fraction, dirichlet_alpha=s.dirichlet_alpha,
        pb_c_init=s.pb_c_init, temperature=s.temperature)
    action = jnp.argmax(out.action_weights, axis=-1) if greedy else out.action
    return action.astype(jnp.int32), out.action_weights

  return search
