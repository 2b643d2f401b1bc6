"""Environments: JAX-native classic control (gymnax style) and the Gymnasium host adapter."""

from jaxdl.envs.classic import JAX_ENVS, Acrobot, CartPole, Environment, MountainCar, make
from jaxdl.envs.gym_host import check_env_id, final_observations, is_atari, make_vector_env

__all__ = [
    "JAX_ENVS", "Acrobot", "CartPole", "Environment", "MountainCar", "check_env_id",
    "final_observations", "is_atari", "make", "make_vector_env",
]
