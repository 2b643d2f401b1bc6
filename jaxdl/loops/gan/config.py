"""The GAN loop's config schema: every key it reads, and its checks.

The ``model`` section is closed here (the generator and discriminator pair
of ``jaxdl.models.gan.make_gan`` takes exactly these options).
``train.eval_every=0`` scores the samples only at the end.
"""

import ml_collections

from jaxdl import configs
from jaxdl.data import toy2d
from jaxdl.train import accumulate, precision, sharding
from jaxdl.train.fit import validate_schedule
from jaxdl.utils.errors import JaxdlError

LOSSES = ("non_saturating", "hinge", "wgan_gp")
IMAGE_DATASETS = ("digits",)


def default_config() -> ml_collections.ConfigDict:
  """The defaults of every GAN preset: the shared sections, ``data``, ``gan`` and ``model``."""
  config = ml_collections.ConfigDict()
  config.loop = "gan"

  config.train = configs.train_section()
  config.train.steps = 5000  # generator updates
  config.train.batch_size = 256
  config.train.eval_every = 1000  # steps between sample scores and plots; 0: only at the end
  config.train.log_every = 250

  config.checkpoint = configs.checkpoint_section()
  config.checkpoint.every_steps = 1000

  config.optim = configs.optim_section(extendable=True)
  config.optim.b1 = 0.5  # Radford et al. (2016, sec. 4): 0.9 oscillated
  config.optim.b2 = 0.999

  config.data = ml_collections.ConfigDict()
  config.data.name = "ring8"  # a 2-D mixture (jaxdl.data.toy2d) or an image set
  config.data.path = ""  # for image sets read from files

  config.gan = ml_collections.ConfigDict()
  config.gan.loss = "non_saturating"
  config.gan.n_critic = 1  # discriminator updates per generator update
  config.gan.latent_dim = 16
  config.gan.r1 = 0.0  # R1 weight gamma; 0 disables
  config.gan.gp = 10.0  # WGAN-GP's lambda (Gulrajani et al., 2017, alg. 1)
  config.gan.spectral_norm = False
  config.gan.d_learning_rate = 0.0  # 0: the same as optim.learning_rate
  config.gan.ema_decay = 0.999
  config.gan.num_eval_samples = 2500  # VEEGAN and PacGAN score 2500 samples

  config.model = ml_collections.ConfigDict()
  config.model.name = "mlp"
  config.model.g_hidden = (256, 256, 256)
  config.model.d_hidden = (256, 256, 256)
  config.model.g_features = (128, 64)
  config.model.d_features = (64, 128)
  config.model.activation = "relu"
  config.model.d_activation = "leaky_relu"
  config.model.g_batchnorm = False
  config.model.conv_impl = "auto"
  return config


def validate(config: ml_collections.ConfigDict) -> None:
  """One-line errors for keys this loop does not read and values no GAN run can use."""
  configs.check_keys(config, default_config())
  sharding.check_sharding(config, supported=("replicated",))  # fsdp: the supervised and lm loops
  precision.check_float32(config)  # bfloat16 and accumulation, likewise
  accumulate.check_unsupported(config)
  g = config.gan
  validate_schedule(config)
  if g.loss not in LOSSES:
    raise JaxdlError(f"gan.loss='{g.loss}' is unknown (choices: {', '.join(LOSSES)})")
  if g.n_critic < 1:
    raise JaxdlError(f"gan.n_critic={g.n_critic} must be >= 1")
  if g.latent_dim < 1:
    raise JaxdlError(f"gan.latent_dim={g.latent_dim} must be >= 1")
  for key in ("r1", "gp", "d_learning_rate"):
    if g[key] < 0:
      raise JaxdlError(f"gan.{key}={g[key]} must be >= 0")
  if not 0 <= g.ema_decay < 1:
    raise JaxdlError(f"gan.ema_decay={g.ema_decay} must be in [0, 1)")
  if g.num_eval_samples < 2:
    raise JaxdlError(f"gan.num_eval_samples={g.num_eval_samples} must be >= 2")
  names = (*toy2d.TOY2D, *IMAGE_DATASETS)
  if config.data.name not in names:
    raise JaxdlError(f"data.name='{config.data.name}' is not a GAN dataset (choices: {', '.join(names)})")
