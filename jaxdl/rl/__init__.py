"""Q-learning: DQN run fully jitted on JAX environments, or on the host for any Gymnasium id.

    jaxdl run dqn_cartpole                       # jitted, 10 seeds at once
    jaxdl run dqn_cartpole_gym                   # host loop on gymnasium's CartPole-v1
    jaxdl run dqn_cartpole_gym --set env.id=LunarLander-v3

The pieces: ``buffer`` (the replay buffer as a pytree), ``dqn`` (targets,
losses, the update), ``agent`` (one seed's state, act and observe),
``anakin`` (the jitted path, ``make_train(config) -> train(rng)``), ``host``
(the Gymnasium loop) and ``run`` (``train_and_evaluate``).
"""

from jaxdl.rl import buffer, dqn
from jaxdl.rl.anakin import Runner, RunState, make_train
from jaxdl.rl.config import default_config
from jaxdl.rl.run import make_runner, train_and_evaluate

__all__ = ["Runner", "RunState", "buffer", "default_config", "dqn", "make_runner", "make_train",
           "train_and_evaluate"]
