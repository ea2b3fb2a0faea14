"""The devices TensorFlow sees, by llmasos' neutral names (:mod:`llmasos.devices`): "cuda:N" is
TensorFlow's "/GPU:N"; TensorFlow has no "mps"."""

from __future__ import annotations

import tensorflow as tf

from ...devices import choose


def available() -> list[str]:
    return ["cpu"] + [f"cuda:{i}" for i in range(len(tf.config.list_physical_devices("GPU")))]


def tf_device(device: str) -> str:
    """``device`` as a TensorFlow device string ("/CPU:0", "/GPU:1") that is there."""
    name = choose(device, available())
    return "/CPU:0" if name == "cpu" else f"/GPU:{name.split(':')[1]}"
