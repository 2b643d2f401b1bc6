"""``train.dtype``: the dtype a run's model computes in (mixed precision).

``train.dtype=bfloat16`` runs the model's matmuls, convolutions and
activations in bfloat16, while the parameters, the optimizer state, the
gradients and the loss stay float32: every jaxdl model takes its ``dtype``
(computation) apart from its ``param_dtype`` (storage), upcasts the
softmax of attention and its logits to float32, and Flax's normalisation
layers reduce their statistics in float32. bfloat16 keeps float32's
exponent range, so no loss scaling is needed (float16 would need it, and
is refused). On GPUs and TPUs with bfloat16 matrix units that is where the
speed is; XLA's CPU backend computes bfloat16 without such units, so on
the CPU it checks the numbers rather than saving time.

``model.dtype``, each model's own option, is an alias: a run may set
either, and setting both to different values is an error.
"""

import jax.numpy as jnp
import ml_collections

from jaxdl.utils.errors import JaxdlError

COMPUTE_DTYPES = ("float32", "bfloat16")


def _dtype_name(value, key: str) -> str:
  try:
    return jnp.dtype(value).name
  except TypeError:
    raise JaxdlError(f"{key}='{value}' is not a dtype") from None


def compute_dtype(config: ml_collections.ConfigDict) -> str:
  """The run's compute dtype: ``train.dtype``, or ``model.dtype`` where only that is set.

  Raises:
    JaxdlError: a dtype jaxdl does not train in, or the two keys disagreeing.
  """
  wanted = config.train.get("dtype", "float32")
  if wanted not in COMPUTE_DTYPES:
    hint = " (float16 needs loss scaling, which jaxdl does not do: bfloat16 does not)" if wanted == "float16" else ""
    raise JaxdlError(f"train.dtype='{wanted}' must be one of {', '.join(COMPUTE_DTYPES)}{hint}")
  model = config.get("model")
  if model is None or model.get("dtype") is None:
    return wanted
  alias = _dtype_name(model.dtype, "model.dtype")
  if wanted == "float32":
    if alias not in COMPUTE_DTYPES:
      raise JaxdlError(f"model.dtype='{alias}' must be one of {', '.join(COMPUTE_DTYPES)} (or set train.dtype)")
    return alias
  if alias != wanted:
    raise JaxdlError(f"model.dtype='{alias}' and train.dtype='{wanted}' disagree: model.dtype is an alias of "
                     f"train.dtype; set only train.dtype")
  return wanted


def model_section(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """``config.model`` with the run's compute dtype as its ``dtype`` (the section itself at float32 unset)."""
  dtype = compute_dtype(config)
  if dtype == "float32" and config.model.get("dtype") is None:
    return config.model
  section = ml_collections.ConfigDict(config.model.to_dict())
  section.dtype = dtype
  return section


def check_float32(config: ml_collections.ConfigDict) -> None:
  """For a loop that trains in float32 only: a one-line error for any other ``train.dtype``."""
  wanted = config.train.get("dtype", "float32")
  if wanted != "float32":
    raise JaxdlError(f"train.dtype='{wanted}' is not supported by the '{config.get('loop', '?')}' loop "
                     f"(it trains in float32; bfloat16: the supervised and lm loops and the studies built on them)")
