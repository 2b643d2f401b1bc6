"""Q-learning: DQN run fully jitted on JAX environments, or on the host for any Gymnasium id.

    jaxdl run dqn_cartpole                       # jitted, 10 seeds at once
    jaxdl run dqn_cartpole_gym                   # host loop on gymnasium's CartPole-v1
    jaxdl run dqn_cartpole_gym --set env.id=LunarLander-v3

The pieces: ``config`` (the schema and what it builds), ``buffer`` (the
replay buffer as a pytree), ``learner`` (targets, losses, the update),
``agent`` (one seed's state, act and observe), ``jitted`` (the jitted path,
``make_train(config) -> train(rng)``), ``host`` (the Gymnasium loop),
``runner`` (the interface both satisfy) and ``experiment``
(``train_and_evaluate``).
"""

from jaxdl.loops.dqn import buffer, learner
from jaxdl.loops.dqn.config import default_config, validate
from jaxdl.loops.dqn.experiment import DQNTask, train_and_evaluate
from jaxdl.loops.dqn.jitted import JittedRunner, RunState, make_train
from jaxdl.loops.dqn.runner import DQNRunner, make_runner

dqn = learner  # the earlier name of the learner module
Runner = JittedRunner  # the earlier name of the jitted executor

__all__ = ["DQNRunner", "DQNTask", "JittedRunner", "RunState", "Runner", "buffer", "default_config", "dqn",
           "learner", "make_runner", "make_train", "train_and_evaluate", "validate"]
