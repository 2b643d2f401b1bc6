"""Flax (Linen) models by family, shared layers, and a lookup by name.

Every model is called as ``model.apply(variables, x, train=...)`` and returns
float32 logits (B, num_classes); see ``get_model`` and ``MODELS``.
"""

from jaxdl.models.cnn import CNN
from jaxdl.models.initializers import INITIALIZERS, get_initializer
from jaxdl.models.layers import (ACTIVATIONS, Conv, avg_pool, get_activation,
                                 global_avg_pool, global_max_pool, max_pool)
from jaxdl.models.mlp import MLP
from jaxdl.models.registry import MODELS, get_model, model_options, register_model
from jaxdl.models.resnet import (BasicBlock, BottleneckBlock, ResNet, ResNet1,
                                 ResNet18, ResNet34, ResNet50)
from jaxdl.models.tcn import TCN

__all__ = [
    'ACTIVATIONS',
    'BasicBlock',
    'BottleneckBlock',
    'CNN',
    'Conv',
    'INITIALIZERS',
    'MLP',
    'MODELS',
    'ResNet',
    'ResNet1',
    'ResNet18',
    'ResNet34',
    'ResNet50',
    'TCN',
    'avg_pool',
    'get_activation',
    'get_initializer',
    'get_model',
    'global_avg_pool',
    'global_max_pool',
    'max_pool',
    'model_options',
    'register_model',
]
