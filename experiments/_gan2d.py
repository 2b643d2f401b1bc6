"""The family base of the 2-D mixture GAN presets (gan_ring8, gan_grid25).

Non-saturating loss with an R1 penalty on real data, a 2-D latent, MLP
generator and discriminator of 3 x 128, Adam 4e-3 (b2 0.99) with cosine
decay, batch 128.
"""

from jaxdl.loops.gan import default_config


def mixture_config(data: str, *, r1: float, steps: int):
  """The shared config for mixture ``data``, with its R1 weight and length."""
  config = default_config()
  config.data.name = data
  config.gan.loss = "non_saturating"
  config.gan.r1 = r1
  config.gan.latent_dim = 2
  config.model.g_hidden = (128, 128, 128)
  config.model.d_hidden = (128, 128, 128)
  config.train.steps = steps
  config.train.batch_size = 128
  config.optim.learning_rate = 4e-3
  config.optim.b2 = 0.99
  config.optim.schedule = "cosine"
  return config
