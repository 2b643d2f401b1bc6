"""DCGAN step on 8x8 digits: XLA's native (transposed) convolutions vs im2col.

    python benchmarks/gan_conv_transpose.py

Times one full GAN step (a discriminator update with the R1 penalty, whose
double backward goes through every convolution, and a generator update) as
ms/step, from a Python loop of a jitted step and inside one jitted chunk of
steps (the way ``jaxdl.loops.gan`` trains), for ``conv_impl`` 'xla' and 'im2col'.
Prints the ratios side by side; results are in the docstring of
``jaxdl.models.gan.ConvTranspose``'s module and in the issue's report.
"""

import time

import jax
import numpy as np

from jaxdl.loops import gan

STEPS = 50


def build(impl: str) -> gan.GANExperiment:
  config = gan.default_config()
  config.data.name = "digits"
  config.model.name = "dcgan"
  config.model.g_features = (64, 32)
  config.model.d_features = (32, 64)
  config.model.conv_impl = impl
  config.gan.r1 = 1.0
  config.gan.latent_dim = 32
  config.train.batch_size = 64
  config.train.num_devices = 1
  return gan.GANTask(config)


def time_chunk(exp: gan.GANExperiment) -> float:
  state, _ = exp.run_chunk(exp.state, np.int32(2))  # compile
  jax.block_until_ready(state)
  t = time.perf_counter()
  state, _ = exp.run_chunk(state, np.int32(STEPS))
  jax.block_until_ready(state)
  return (time.perf_counter() - t) / STEPS * 1e3


def time_loop(exp: gan.GANExperiment) -> float:
  step = jax.jit(exp.step, donate_argnums=(0,))
  batch = {"x": exp.dataset.x_train[None, :64]}  # (n_critic=1, B, 8, 8, 1)
  state, _ = step(exp.state, batch)
  jax.block_until_ready(state)
  t = time.perf_counter()
  for _ in range(STEPS):
    state, _ = step(state, batch)
  jax.block_until_ready(state)
  return (time.perf_counter() - t) / STEPS * 1e3


def main():
  results = {impl: (time_loop(build(impl)), time_chunk(build(impl))) for impl in ("xla", "im2col")}
  print(f"{'impl':8} {'loop ms/step':>13} {'chunk ms/step':>14}")
  for impl, (loop, chunk) in results.items():
    print(f"{impl:8} {loop:13.2f} {chunk:14.2f}")
  (xl, xc), (il, ic) = results["xla"], results["im2col"]
  print(f"xla / im2col: loop {xl / il:.2f}x, chunk {xc / ic:.2f}x")


if __name__ == "__main__":
  main()
