"""The adversarial loop: a generator and a discriminator trained against each other.

    state, metrics = gan_step(state, {"x": (n_critic, B, ...) real samples})

``config`` (schema), ``state`` (both networks), ``losses``, ``step`` (the pure
step and its chunk), ``metrics`` (mode coverage, Frechet distance),
``plots`` and ``experiment`` (``GANTask``, ``train_and_evaluate``).
"""

from jaxdl.loops.gan.config import IMAGE_DATASETS, LOSSES, default_config, validate
from jaxdl.loops.gan.experiment import GANExperiment, GANTask, train_and_evaluate
from jaxdl.loops.gan.losses import discriminator_loss, generator_loss, gradient_penalty, r1_penalty
from jaxdl.loops.gan.metrics import (CONFIDENCE, QUALITY_SIGMAS, classifier_config, digits_classifier,
                                     frechet_distance, image_metrics, make_classify, mode_metrics)
from jaxdl.loops.gan.plots import plot_gan_metrics, plot_image_grid, plot_samples_2d
from jaxdl.loops.gan.state import GANState, create_gan_state
from jaxdl.loops.gan.step import gan_step, make_gan_chunk, sample_generator

base_gan_config = default_config  # the earlier name

__all__ = ["CONFIDENCE", "GANExperiment", "GANState", "GANTask", "IMAGE_DATASETS", "LOSSES",
           "QUALITY_SIGMAS", "base_gan_config", "classifier_config", "create_gan_state",
           "default_config", "digits_classifier", "discriminator_loss", "frechet_distance",
           "gan_step", "generator_loss", "gradient_penalty", "image_metrics", "make_classify",
           "make_gan_chunk", "mode_metrics", "plot_gan_metrics", "plot_image_grid",
           "plot_samples_2d", "r1_penalty", "sample_generator", "train_and_evaluate", "validate"]
