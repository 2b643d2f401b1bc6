"""The simclr loop's config schema: every key it reads, and its checks.

The ``model`` section is open: it holds the encoder's own options (a
``jaxdl.models`` classifier whose head is dropped, see
``jaxdl.loops.simclr.model``), checked against the model's fields when it is
built. ``train.eval_every=0`` evaluates only at the end.
"""

import ml_collections

from jaxdl import configs
from jaxdl.train import accumulate, precision, sharding
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every SimCLR preset: contrastive pretraining, then linear probes."""
  config = ml_collections.ConfigDict()
  config.loop = "simclr"

  config.train = configs.train_section()
  config.train.steps = 1000
  config.train.batch_size = 256  # images per step; each gives two views, so 2B embeddings
  config.train.eval_every = 0  # steps between evaluations (test NT-Xent, k-NN accuracy); 0: only at the end

  config.checkpoint = configs.checkpoint_section()
  config.optim = configs.optim_section(extendable=True)

  config.data = ml_collections.ConfigDict()
  config.data.name = "digits"  # images (B, H, W, C) or signals (B, L, C); labels only for the probes
  config.data.path = ""

  # The two views of every image, drawn on the device inside the step.
  config.augment = ml_collections.ConfigDict()
  config.augment.rotate = 15.0  # degrees, uniform in [-rotate, rotate] (images only)
  config.augment.zoom = 0.2  # scale factor uniform in [1 - zoom, 1 + zoom]
  config.augment.translate = 1.0  # pixels (samples), uniform in [-translate, translate] per axis
  config.augment.cutout = 0  # side of a square (segment) set to 0 at a random place; 0: off
  config.augment.brightness = 0.2  # intensity factor uniform in [1 - b, 1 + b]
  config.augment.noise = 0.05  # std of additive Gaussian noise

  config.simclr = ml_collections.ConfigDict()
  config.simclr.temperature = 0.5  # tau of NT-Xent
  config.simclr.proj_hidden = (256,)  # the projection head's hidden widths (an MLP)
  config.simclr.proj_dim = 64  # the embedding the loss compares
  config.simclr.knn_k = 20  # neighbours of the k-NN accuracy reported at each evaluation

  # Linear probes on frozen features, after pretraining.
  config.probe = ml_collections.ConfigDict()
  config.probe.l2 = 1e-3  # L2 weight on the probe's weights (features are standardised)
  config.probe.steps = 300  # full-batch L-BFGS iterations
  config.probe.labels_per_class = 10  # the few-label probe's training set
  config.probe.subset_seed = 0  # which labelled examples it gets

  config.model = ml_collections.ConfigDict()
  config.model.name = "cnn"
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no run can use."""
  configs.check_keys(config, default_config(), open_sections=("model",))
  sharding.check_sharding(config, supported=("replicated",))  # fsdp: the supervised and lm loops
  precision.check_float32(config)  # bfloat16 and accumulation, likewise
  accumulate.check_unsupported(config)
  validate_schedule(config)
  if config.train.batch_size < 2:
    raise JaxdlError(f"train.batch_size={config.train.batch_size} must be >= 2: NT-Xent contrasts each "
                     f"image's views with the other images of the batch")
  s, a, p = config.simclr, config.augment, config.probe
  if not s.temperature > 0:
    raise JaxdlError(f"simclr.temperature={s.temperature} must be > 0")
  if s.proj_dim < 1 or any(w < 1 for w in s.proj_hidden):
    raise JaxdlError(f"simclr.proj_dim={s.proj_dim} and simclr.proj_hidden={tuple(s.proj_hidden)} "
                     f"must be >= 1")
  if s.knn_k < 1:
    raise JaxdlError(f"simclr.knn_k={s.knn_k} must be >= 1")
  for key in ("rotate", "translate", "cutout", "noise"):
    if not a[key] >= 0:
      raise JaxdlError(f"augment.{key}={a[key]} must be >= 0")
  for key in ("zoom", "brightness"):
    if not 0 <= a[key] < 1:
      raise JaxdlError(f"augment.{key}={a[key]} must be in [0, 1)")
  if not p.l2 >= 0:
    raise JaxdlError(f"probe.l2={p.l2} must be >= 0")
  if p.steps < 1:
    raise JaxdlError(f"probe.steps={p.steps} must be >= 1")
  if p.labels_per_class < 1:
    raise JaxdlError(f"probe.labels_per_class={p.labels_per_class} must be >= 1")
