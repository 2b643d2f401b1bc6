"""How good a generator is: mode metrics for 2-D mixtures, Frechet distance for images.

On ``gan.num_eval_samples`` samples of the EMA generator: for the 2-D
mixtures ``high_quality_fraction`` (samples within 3 sigma of their nearest
mode) and ``modes_covered`` (modes nearest to at least one high-quality
sample), as VEEGAN (Srivastava et al., 2017) and PacGAN (Lin et al., 2018)
define them; for digits the Frechet distance to held-out digits in the
feature space of a classifier trained by the supervised loop (see
:func:`digits_classifier`: the one import of another loop, declared in the
import-linter contract), the share of samples the classifier labels with
confidence >= 0.9, and each class's share.
"""

import functools
import hashlib
import json
import tempfile
from collections.abc import Callable
from typing import Any

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from jaxdl import data as data_lib
from jaxdl import models as models_lib
from jaxdl.configs import to_dict
from jaxdl.data.builtin import cache_dir
from jaxdl.loops import supervised
from jaxdl.train.writers import console, write_atomic

# The confidence above which a classifier's label counts as clear (the issue's
# definition of a recognisable digit).
CONFIDENCE = 0.9
# High quality means within this many sigmas of the nearest mode (VEEGAN, sec. 5.1).
QUALITY_SIGMAS = 3.0


@jax.jit  # one program, not one per eager op
def mode_metrics(samples: jax.Array, centers: jax.Array, sigma: float) -> dict[str, jax.Array]:
  """VEEGAN / PacGAN mode metrics of 2-D samples against a mixture's modes.

  Args:
    samples: (N, 2) generated points.
    centers: (K, 2) mode centres.
    sigma: the modes' standard deviation.

  Returns:
    ``high_quality_fraction``: the share of samples within 3 sigma of their
    nearest mode; ``modes_covered``: how many modes are the nearest mode of at
    least one high-quality sample; ``mode_counts`` (K,): high-quality samples
    per mode.
  """
  d2 = jnp.sum(jnp.square(samples[:, None, :] - centers[None, :, :]), axis=-1)  # (N, K)
  nearest = jnp.argmin(d2, axis=1)  # (N,)
  good = jnp.min(d2, axis=1) <= (QUALITY_SIGMAS * sigma) ** 2  # (N,)
  counts = jnp.zeros(centers.shape[0], jnp.int32).at[nearest].add(good.astype(jnp.int32))  # (K,)
  return {"high_quality_fraction": jnp.mean(good.astype(jnp.float32)),
          "modes_covered": jnp.sum(counts > 0), "mode_counts": counts}


def frechet_distance(feats_a: np.ndarray, feats_b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to two feature sets (N, D).

  ``||mu_a - mu_b||^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))`` (Heusel et al.,
  2017), in float64. The trace of the matrix square root is computed as
  ``sum sqrt(eig(S_a^(1/2) S_b S_a^(1/2)))``: that matrix is symmetric PSD and
  has the eigenvalues of ``S_a S_b``, so ``eigh`` suffices and no complex
  parts appear.
  """
  a, b = np.asarray(feats_a, np.float64), np.asarray(feats_b, np.float64)
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  w, v = np.linalg.eigh(cov_a)
  sqrt_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
  middle = sqrt_a @ cov_b @ sqrt_a
  tr_sqrt = np.sum(np.sqrt(np.clip(np.linalg.eigvalsh((middle + middle.T) / 2), 0, None)))
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


# ---------------------------------------------- digits feature classifier --

# The classifier whose features the Frechet distance uses: an MLP trained by
# jaxdl's supervised loop on the digits training split (never the 360
# held-out digits that serve as the reference). Its 64-unit last hidden layer
# is the feature space: small enough for a well-conditioned covariance from
# 360 examples. No label smoothing and no dropout, so real held-out digits
# get confident labels (about 97% at >= 0.9) and "confidence >= 0.9" means
# what it says.
CLASSIFIER_HIDDEN = (256, 64)
CLASSIFIER_STEPS = 4000


def classifier_config() -> ml_collections.ConfigDict:
  config = supervised.default_config()
  config.data.name = "digits"
  config.model.name = "mlp"
  config.model.hidden = CLASSIFIER_HIDDEN
  config.model.kernel_init = "he"
  config.train.steps = CLASSIFIER_STEPS
  config.train.batch_size = 128
  config.train.eval_every = CLASSIFIER_STEPS
  config.train.log_every = 500
  config.train.num_devices = 1
  config.checkpoint.every_steps = 0
  config.checkpoint.async_save = False
  config.optim.name = "adamw"
  config.optim.learning_rate = 2e-3
  config.optim.schedule = "cosine"
  config.augment.shift = 1
  return config


def digits_classifier() -> tuple[dict, dict[str, float]]:
  """The feature classifier's params, trained on first use and cached.

  The cache file is ``cache_dir() / digits_classifier-<hash>.msgpack``
  (``jaxdl.data.builtin.cache_dir``: ``$JAXDL_CACHE_DIR`` or ``~/.cache/jaxdl``), the
  hash covering the classifier's config and the digits split, so a change to
  either trains a new one. Training takes about 10 s on a 2-core CPU.

  Returns:
    (params, info) where info holds the classifier's held-out accuracy.
  """
  config = classifier_config()
  ds_info = data_lib.load_dataset("digits", None).info
  digest = hashlib.sha256(json.dumps({"config": to_dict(config), "data": ds_info.get("arrays_sha256")},
                                     sort_keys=True).encode()).hexdigest()[:16]
  path = cache_dir() / f"digits_classifier-{digest}.msgpack"
  model = models_lib.get_model("mlp", 10, hidden=CLASSIFIER_HIDDEN, kernel_init="he")
  template = jax.eval_shape(functools.partial(model.init, train=False), jax.random.PRNGKey(0),
                            jnp.zeros((1, 8, 8, 1)))["params"]
  if path.is_file():
    try:
      blob = flax.serialization.msgpack_restore(path.read_bytes())
      params = flax.serialization.from_state_dict(template, blob["params"])
      return params, dict(blob["info"])
    except Exception as e:  # a damaged cache file is rebuilt, not trusted
      console(f"jaxdl: ignoring unreadable classifier cache {path} ({type(e).__name__})")
  console(f"jaxdl: training the digits feature classifier once (cached in {path})")
  with tempfile.TemporaryDirectory() as workdir:
    state, metrics = supervised.train_and_evaluate(config, workdir)
  params = jax.device_get(state.params)
  info = {"test_accuracy": float(metrics["test_accuracy"]), "steps": CLASSIFIER_STEPS}
  path.parent.mkdir(parents=True, exist_ok=True)
  # Atomic: parallel first uses never see half a file.
  write_atomic(path, flax.serialization.msgpack_serialize(
      {"params": flax.serialization.to_state_dict(params), "info": info}))
  return params, info


def make_classify(params: dict) -> Callable[[jax.Array], tuple[jax.Array, jax.Array]]:
  """``classify(x) -> (features (N, 64), probabilities (N, 10))``, jitted."""
  body = models_lib.MLP(CLASSIFIER_HIDDEN[-1], hidden=CLASSIFIER_HIDDEN[:-1])
  head = models_lib.MLP(10, hidden=CLASSIFIER_HIDDEN)
  body_params = {k: v for k, v in params.items() if k != f"Dense_{len(CLASSIFIER_HIDDEN)}"}

  @jax.jit
  def classify(x):
    # The MLP's last hidden activations: the same Dense layers, cut before the head.
    feats = nn.relu(body.apply({"params": body_params}, x, train=False))
    probs = jax.nn.softmax(head.apply({"params": params}, x, train=False))
    return feats, probs

  return classify


def image_metrics(classify, samples: jax.Array, reference_feats: np.ndarray) -> dict[str, Any]:
  """Frechet distance, confident share and class shares of generated images."""
  feats, probs = jax.device_get(classify(samples))
  labels = probs.argmax(1)
  shares = np.bincount(labels, minlength=probs.shape[1]) / len(labels)
  return {"frechet_distance": frechet_distance(feats, reference_feats),
          "confident_fraction": float(np.mean(probs.max(1) >= CONFIDENCE)),
          "min_class_fraction": float(shares.min()), "class_fractions": shares}
