"""Training steps in TensorFlow, with torch.optim's update rules written out in TF ops.

Keras' own optimizers differ from the neutral (torch) semantics — Adam's epsilon sits inside
the bias correction, its ``weight_decay`` is decoupled, RMSprop's epsilon goes inside the
square root — so the rules of :mod:`llmasos.optim` are implemented here directly, in the order
torch computes them: scalar factors in float64 (torch computes them as Python floats) and then
rounded to float32, tensor arithmetic in float32.

One ``tf.function`` runs forward, backward and update; it is traced once, on the first step
(an input signature with a dynamic batch), and reads the learning rate from a ``tf.Variable``,
so a schedule never retraces it.

>>> from llmasos.spec import ModelSpec
>>> from llmasos.adapters.tf.build import build
>>> model = build(ModelSpec.sequential((4,)).add("Dense", 3, activation="softmax"), seed=0)
>>> trainer = model.trainer(Optimizer("SGD", lr=0.1, momentum=0.9), "cross_entropy", seed=0)
>>> loss_sum, outputs = trainer.train_step([np.ones((2, 4), np.float32)], np.array([0, 2]), lr=0.1)
>>> sorted(trainer.get_state()["slots"]["momentum"]["dense"])
['bias', 'kernel']
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ...optim import SLOTS, Optimizer
from ..base import Trainer, Weights
from .build import TFModel

# XLA (jit_compile=True) passes the same tests but was slower on CPU: 1.56 ms against 1.12 ms a
# step for a 784-128-10 MLP at batch 32; it also compiles again for every new batch size (the
# short last batch of an epoch). Kept off.
JIT_COMPILE = False

_F32 = tf.float32


def _scalar(value) -> tf.Tensor:
    """A float64 scalar rounded to float32, as torch rounds a Python float scalar for a float32 op."""
    return tf.cast(value, _F32)


def compute_loss(loss: str, out: tf.Tensor, target: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """Keras' ``sum_over_batch_size``: ``sum(w_i * l_i) / batch``, where ``l_i`` is sample i's
    loss (the mean over its output units); classification losses take logits."""
    if loss == "cross_entropy":
        values = tf.nn.sparse_softmax_cross_entropy_with_logits(target, out)
    else:
        target = tf.reshape(target, tf.shape(out))
        if loss == "binary_cross_entropy":
            values = tf.nn.sigmoid_cross_entropy_with_logits(target, out)
        else:
            error = out - target
            values = tf.square(error) if loss == "mse" else tf.abs(error)
        values = tf.reduce_mean(tf.reshape(values, (tf.shape(values)[0], -1)), axis=1)
    return tf.reduce_sum(values * weights) / tf.cast(tf.shape(values)[0], values.dtype)


class _Rule:
    """One optimizer's update, in torch.optim's order of operations (see :mod:`llmasos.optim`)."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.kind = optimizer.kind
        self.o = optimizer.options
        # like torch, no momentum buffer without momentum
        self.slots = tuple(s for s in SLOTS[self.kind] if s != "momentum" or self.o["momentum"])

    def scalars(self, lr: tf.Tensor, step: tf.Tensor) -> dict[str, tf.Tensor]:
        """Per-step factors from the float64 learning rate and step count (after this step)."""
        out = {"neg_lr": _scalar(-lr)}
        if self.kind in ("adam", "adamw"):
            beta1, beta2 = self.o["betas"]
            t = tf.cast(step, tf.float64)
            out["neg_step_size"] = _scalar(-lr / (1.0 - beta1 ** t))
            out["correction2_sqrt"] = _scalar(tf.sqrt(1.0 - beta2 ** t))
            if self.kind == "adamw":
                out["decay"] = _scalar(1.0 - lr * self.o["weight_decay"])
        return out

    def apply(self, param, grad: tf.Tensor, slots: dict[str, tf.Variable], s: dict[str, tf.Tensor]) -> None:
        o = self.o
        p = tf.convert_to_tensor(param)
        if self.kind == "adamw":
            p = p * s["decay"]
        elif o["weight_decay"]:
            grad = grad + _scalar(o["weight_decay"]) * p
        if self.kind == "sgd":
            if o["momentum"]:
                # torch starts the buffer at the first gradient: momentum * 0 + g is exactly g
                buf = slots["momentum"].assign(slots["momentum"] * _scalar(o["momentum"]) + grad)
                grad = grad + _scalar(o["momentum"]) * buf if o["nesterov"] else buf
            param.assign(p + s["neg_lr"] * grad)
        elif self.kind in ("adam", "adamw"):
            beta1, beta2 = o["betas"]
            m = slots["m"].assign(slots["m"] + _scalar(1.0 - beta1) * (grad - slots["m"]))  # torch: lerp
            v = slots["v"].assign(slots["v"] * _scalar(beta2) + _scalar(1.0 - beta2) * grad * grad)
            denom = tf.sqrt(v) / s["correction2_sqrt"] + _scalar(o["eps"])
            param.assign(p + s["neg_step_size"] * m / denom)
        else:
            v = slots["v"].assign(slots["v"] * _scalar(o["alpha"]) + _scalar(1.0 - o["alpha"]) * grad * grad)
            avg = tf.sqrt(v) + _scalar(o["eps"])
            if o["momentum"]:
                buf = slots["momentum"].assign(slots["momentum"] * _scalar(o["momentum"]) + grad / avg)
                param.assign(p + s["neg_lr"] * buf)
            else:
                param.assign(p + s["neg_lr"] * grad / avg)


class TFTrainer(Trainer):
    """Trains a :class:`TFModel` on the model that ends in logits when the loss takes logits."""

    def __init__(self, model: TFModel, optimizer: Optimizer, loss: str, seed: int | None = None) -> None:
        self.model = model
        self.loss = loss
        self.network = model.logits if loss in ("cross_entropy", "binary_cross_entropy") else model.native
        self.rule = _Rule(optimizer)
        self.lr = tf.Variable(optimizer.lr, dtype=tf.float64, trainable=False)
        self._lr_value = optimizer.lr
        self.steps = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.slots: dict[tuple[str, str], dict[str, tf.Variable]] = {}
        # Keras' dropout draws from SeedGenerator states: reseeding assigns them
        self.seed_states = [v for v in model.native.variables if v.name == "seed_generator_state"]
        self.reseed(seed)
        target = tf.TensorSpec((None,), tf.int64) if loss == "cross_entropy" else tf.TensorSpec(None, _F32)
        self.signature = [model.input_signature(), target, tf.TensorSpec((None,), _F32)]
        self._train = self._eval = None  # traced on first use
        # a data-parallel run (llmasos.adapters.tf.distributed) sets these: the step runs as the
        # strategy's replica and ``combine`` sums the gradients across workers before the update
        self.strategy: tf.distribute.Strategy | None = None
        self.combine = None
        self._collect()

    def _collect(self) -> None:
        """(Re)collect the trainable weights, with their slots; existing slots persist."""
        trainable = {id(v) for v in self.model.native.trainable_variables}
        self.entries = [entry for entry in self.model.weight_variables if id(entry[2]) in trainable]
        for layer, name, var in self.entries:
            if (layer, name) not in self.slots:
                self.slots[layer, name] = {slot: tf.Variable(tf.zeros(var.shape, _F32), trainable=False)
                                           for slot in self.rule.slots}
        self.version = self.model.trainable_version
        self._train = None

    def _trace(self, step, **options):
        # Calling the concrete function skips tf.function's argument matching: ~25% of a small step.
        return tf.function(step, input_signature=self.signature, **options).get_concrete_function()

    def _forward(self, inputs, training: bool) -> tf.Tensor:
        out = self.network(dict(zip((i.name for i in self.model.spec.inputs), inputs)), training=training)
        return out[self.model.spec.outputs[0]]

    def _train_step(self, inputs, target, weights):
        with tf.GradientTape() as tape:
            out = self._forward(inputs, True)
            value = compute_loss(self.loss, out, target, weights)
        grads = tape.gradient(value, [var for _, _, var in self.entries])
        if self.combine is not None:
            grads = self.combine(grads)
        step = self.steps.assign_add(1)
        scalars = self.rule.scalars(self.lr, step)
        for (layer, name, var), grad in zip(self.entries, grads):
            if grad is not None:  # weights that do not reach the loss are left alone, as in torch
                self.rule.apply(var, tf.convert_to_tensor(grad), self.slots[layer, name], scalars)
        return value, out

    def _replica_step(self, *args):
        return self.strategy.run(self._train_step, args=args)

    def _eval_step(self, inputs, target, weights):
        out = self._forward(inputs, False)
        return compute_loss(self.loss, out, target, weights), out

    def _target(self, target: np.ndarray) -> np.ndarray:
        if self.loss == "cross_entropy":
            return np.asarray(target, dtype=np.int64).reshape(-1)
        return np.asarray(target, dtype=np.float32)

    @staticmethod
    def _weights(weights: np.ndarray | None, count: int) -> np.ndarray:
        # one traced step for both: no weights are weights of one
        return np.ones(count, np.float32) if weights is None else np.asarray(weights, dtype=np.float32).reshape(-1)

    def train_step(self, inputs: list[np.ndarray], target: np.ndarray, lr: float,
                   weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        if self.version != self.model.trainable_version:
            self._collect()
        if self._train is None:
            step = self._train_step if self.strategy is None else self._replica_step
            self._train = self._trace(step, jit_compile=JIT_COMPILE)
        if lr != self._lr_value:  # assign only on change: a constant rate costs nothing per step
            self.lr.assign(lr)
            self._lr_value = lr
        value, out = self._train(self.model.feed(inputs), self._target(target), self._weights(weights, len(target)))
        return float(value) * len(target), out.numpy()

    def eval_step(self, inputs: list[np.ndarray], target: np.ndarray,
                  weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        if self._eval is None:
            self._eval = self._trace(self._eval_step)
        value, out = self._eval(self.model.feed(inputs), self._target(target), self._weights(weights, len(target)))
        return float(value) * len(target), out.numpy()

    def reseed(self, seed: int | None) -> None:
        if seed is None:
            return
        for index, state in enumerate(self.seed_states):
            state.assign(np.array([(seed * 1_000_003 + index) % (2**31 - 1), 0], dtype=state.dtype))

    def get_state(self) -> dict:
        slots: dict[str, Weights] = {}
        for (layer, name), values in self.slots.items():
            for slot, variable in values.items():
                slots.setdefault(slot, {}).setdefault(layer, {})[name] = \
                    self.model.to_neutral(layer, name, variable.numpy())
        return {"step": int(self.steps.numpy()), "slots": slots}

    def set_state(self, state: dict) -> None:
        self.steps.assign(int(state.get("step", 0)))
        given = state.get("slots", {})
        for (layer, name), values in self.slots.items():
            for slot, variable in values.items():
                value = given.get(slot, {}).get(layer, {}).get(name)
                if value is not None:
                    variable.assign(self.model.to_native(layer, name, value, variable.shape))
