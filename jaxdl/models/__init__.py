"""Flax (Linen) models by family, shared layers, and a lookup by name.

Every model is called as ``model.apply(variables, x, train=...)`` and returns
float32 logits (B, num_classes); see ``get_model`` and ``MODELS``.
"""

from jaxdl.models.cnn import CNN
from jaxdl.models.initializers import INITIALIZERS, get_initializer
from jaxdl.models.conv import Conv
from jaxdl.models.layers import (ACTIVATIONS, TokenEmbedding, avg_pool, get_activation,
                                 global_avg_pool, global_max_pool, length_mask,
                                 masked_pool, max_pool, takes_lengths, zero_padding)
from jaxdl.models.mlp import MLP
from jaxdl.models.registry import (MODELS, constructor_of, get_model, model_options, option_defaults,
                                   options_from_config, register_model)
from jaxdl.models.resnet import (BasicBlock, BottleneckBlock, ResNet, ResNet1,
                                 ResNet18, ResNet34, ResNet50)
from jaxdl.models.rnn import (GRU, LSTM, RNNClassifier, RNNEncoder, RNNLanguageModel,
                              RecurrentCell, SimpleRNN, input_gradient_norms)
from jaxdl.models.tcn import TCN
from jaxdl.models.transformer import (SelfAttention, TransformerBlock, TransformerClassifier,
                                      TransformerLanguageModel, attention_maps,
                                      sinusoidal_positions)

__all__ = [
    'ACTIVATIONS',
    'BasicBlock',
    'BottleneckBlock',
    'CNN',
    'Conv',
    'GRU',
    'INITIALIZERS',
    'LSTM',
    'MLP',
    'MODELS',
    'RNNClassifier',
    'RNNEncoder',
    'RNNLanguageModel',
    'RecurrentCell',
    'ResNet',
    'ResNet1',
    'ResNet18',
    'ResNet34',
    'ResNet50',
    'SelfAttention',
    'SimpleRNN',
    'TCN',
    'TokenEmbedding',
    'TransformerBlock',
    'TransformerClassifier',
    'TransformerLanguageModel',
    'attention_maps',
    'avg_pool',
    'constructor_of',
    'get_activation',
    'get_initializer',
    'get_model',
    'global_avg_pool',
    'global_max_pool',
    'input_gradient_norms',
    'length_mask',
    'masked_pool',
    'max_pool',
    'model_options',
    'option_defaults',
    'options_from_config',
    'register_model',
    'sinusoidal_positions',
    'takes_lengths',
    'zero_padding',
]
