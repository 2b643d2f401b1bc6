"""Vanishing gradients: 20-layer MLPs on digits with sigmoid, tanh, ReLU, and ReLU with residuals and BN.

    jaxdl run grad_flow

Four variants of one MLP (20 hidden layers of 64 units, Dense_0..Dense_19,
and the output layer Dense_20), each trained by Adam as a supervised run in
WORKDIR/<variant>. Before and after training the study measures every
layer's gradient norm on 512 training examples: ``grad_flow.png`` plots them
against depth, ``metrics.json`` holds ``grad_norm_first_over_last/<variant>``
(the first layer's over the output layer's, at initialisation) and
``test_accuracy/<variant>``. Each sub-run also logs every layer's gradient
norm and output statistics (``train.log_layer_stats``) to its metrics.jsonl
and TensorBoard.

Result (2-core CPU shared with other jobs, seed 0; 5:53 wall under a load of
~13, 117 s of CPU time), first layer's gradient norm over the output
layer's at initialisation / test accuracy:

    sigmoid            1.9e-13   0.103   (vanishes: the first layers never learn)
    tanh               0.98      0.967
    relu (He init)     1.41      0.958
    relu_residual_bn   1.24      0.969

After training the ratios are 2.6e-13, 17.3, 2.3 and 4.5.
"""

from jaxdl.loops.grad_flow import default_config


def get_config():
  config = default_config()
  config.data.name = "digits"
  config.model.name = "mlp"
  config.model.hidden = (64,) * 20  # Dense_0..Dense_19 hidden, Dense_20 the output layer
  config.model.kernel_init = "lecun"
  config.model.activation = "relu"
  config.model.use_batchnorm = False
  config.model.residual = False
  config.study.variants = (
      "sigmoid: model.activation=sigmoid",
      "tanh: model.activation=tanh",
      "relu: model.kernel_init=he",
      "relu_residual_bn: model.kernel_init=he; model.residual=true; model.use_batchnorm=true",
  )
  config.study.grad_examples = 512
  config.train.steps = 800
  config.train.batch_size = 128
  config.train.eval_every = 0
  config.train.log_every = 50
  config.train.log_layer_stats = True
  config.checkpoint.every_steps = 0
  config.optim.name = "adam"
  config.optim.learning_rate = 1e-3
  return config
