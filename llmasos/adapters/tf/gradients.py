"""The gradient of a loss with respect to a model's inputs, for adversarial attacks
(:mod:`llmasos.robust`): in inference mode (``training=False``), on the outputs the loss takes
(the logits model for the classification losses), the loss computed as training computes it.
One ``tf.function`` per loss, traced once on first use (batch size dynamic)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import tensorflow as tf

from ... import losses
from .losses import LOSS_OPS

if TYPE_CHECKING:
    from .build import TFModel


def input_gradient(model: "TFModel", inputs: list[np.ndarray], target: np.ndarray, loss: Any) -> list[np.ndarray]:
    """d(batch mean loss)/d(inputs), one array per input."""
    loss = losses.get(loss).for_activation(model.spec.final_activation())
    key = str(loss)
    if key not in model.gradient_functions:
        model.gradient_functions[key] = _trace(model, loss)
    target = np.asarray(target, dtype=loss.target_dtype)
    return [g.numpy() for g in model.gradient_functions[key](model.feed(inputs), target)]


def _trace(model: "TFModel", loss: losses.Loss):
    network = model.logits if loss.logits else model.native
    names = [i.name for i in model.spec.inputs]

    def gradient(inputs, target):
        with tf.GradientTape() as tape:
            for x in inputs:
                tape.watch(x)
            out = network(dict(zip(names, inputs)), training=False)[model.spec.outputs[0]]
            value = losses.batch_loss(LOSS_OPS, loss, target, tf.cast(out, tf.float32))
        return tape.gradient(value, inputs)

    # no autograph: the body is straight-line TensorFlow, and autograph would re-read library
    # source (llmasos.losses) from disk to convert it
    target = tf.TensorSpec((None,), tf.int64) if loss.task == "classes" else tf.TensorSpec(None, loss.target_dtype)
    with model.placed():
        return tf.function(gradient, input_signature=[model.input_signature(), target], autograph=False)
