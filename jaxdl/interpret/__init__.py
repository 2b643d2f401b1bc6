"""Why a classifier decided what it did: attribution maps, their sanity checks, ``jaxdl explain``.

Every method takes ``(model, variables, x, target_class)`` for any classifier
of ``jaxdl.models`` (``model`` a Flax module, its ``apply``, or an
``apply_fn(variables, x)``; ``target_class`` None for the prediction) and is
pure and jittable:

- :func:`gradient`, :func:`gradient_x_input`, :func:`smoothgrad`,
  :func:`integrated_gradients` (with its completeness error): (B, ...) of
  the input's shape;
- :func:`gradcam` (convolutional models, any layer) and
  :func:`attention_rollout` (Transformers): (B, *spatial) maps.

:func:`cascading_randomization` is Adebayo et al.'s sanity check, and
:func:`explain` runs a method, the check and the plots on a batch.

    maps = jax.jit(functools.partial(interpret.gradcam, model))(variables, x)
"""

from jaxdl.interpret.common import as_apply, resolve_targets
from jaxdl.interpret.explain import (METHODS, attribute, check_classifier_workdir, explain, get_method,
                                     saliency_map, test_examples)
from jaxdl.interpret.gradcam import conv_layers, gradcam, module_calls, resolve_layer
from jaxdl.interpret.gradients import (BASELINES, IG_STEPS, SMOOTHGRAD_NOISE, SMOOTHGRAD_SAMPLES, IGResult,
                                       gradient, gradient_x_input, integrated_gradients, make_baseline,
                                       quadrature, smoothgrad)
from jaxdl.interpret.plots import plot_cascade, plot_image_maps, plot_signal_maps
from jaxdl.interpret.rollout import attention_rollout, attention_weights, rollout
from jaxdl.interpret.sanity import SanityResult, cascading_randomization, layer_order, mean_spearman, spearman

__all__ = [
    "BASELINES", "IGResult", "IG_STEPS", "METHODS", "SMOOTHGRAD_NOISE", "SMOOTHGRAD_SAMPLES", "SanityResult",
    "as_apply", "attention_rollout", "attention_weights", "attribute", "cascading_randomization",
    "check_classifier_workdir", "conv_layers", "explain", "get_method", "gradcam", "gradient",
    "gradient_x_input", "integrated_gradients", "layer_order", "make_baseline", "mean_spearman",
    "module_calls", "plot_cascade", "plot_image_maps", "plot_signal_maps", "quadrature", "resolve_layer",
    "resolve_targets", "rollout", "saliency_map", "smoothgrad", "spearman", "test_examples",
]
