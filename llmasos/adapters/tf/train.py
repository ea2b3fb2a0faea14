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

from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf

from ...losses import Loss, batch_loss
from ...optim import SLOTS, Optimizer
from ..base import StepOptions, Trainer, Weights
from .losses import LOSS_OPS

if TYPE_CHECKING:
    from .build import TFModel

# XLA (jit_compile=True) passes the same tests but was slower on CPU: 1.56 ms against 1.12 ms a
# step for a 784-128-10 MLP at batch 32; it also compiles again for every new batch size (the
# short last batch of an epoch). Kept off.
JIT_COMPILE = False

_F32 = tf.float32

# Keras' dtype policies for Lightning's precision names: float32 weights, half-precision compute
_POLICIES = {"32": None, "16-mixed": "mixed_float16", "bf16-mixed": "mixed_bfloat16"}


def _float32(out: tf.Tensor) -> np.ndarray:
    """Outputs as float32 NumPy for the neutral metrics (a mixed-precision step computes in half)."""
    return (out if out.dtype == _F32 else tf.cast(out, _F32)).numpy()


def _scalar(value) -> tf.Tensor:
    """A float64 scalar rounded to float32, as torch rounds a Python float scalar for a float32 op."""
    return tf.cast(value, _F32)


def _clip_norm(grads: list, max_norm: float) -> list:
    """``torch.nn.utils.clip_grad_norm_``: the L2 norm of the per-tensor norms, coefficient
    ``max_norm / (norm + 1e-6)`` clamped to 1."""
    total = tf.norm(tf.stack([tf.norm(g) for g in grads if g is not None]))
    coef = tf.minimum(_scalar(max_norm) / (total + _scalar(1e-6)), 1.0)
    return [None if g is None else g * coef for g in grads]


class _LossScale:
    """Dynamic loss scaling with ``torch.amp.GradScaler``'s defaults: start at 2**16, halve and skip
    the step when a gradient is inf/NaN, double after 2000 finite steps in a row."""

    def __init__(self) -> None:
        self.scale = tf.Variable(2.0 ** 16, dtype=_F32, trainable=False)
        self.good = tf.Variable(0, dtype=tf.int64, trainable=False)

    def unscale(self, grads: list) -> tuple[list, tf.Tensor]:
        """The gradients divided by the scale, and whether all are finite."""
        inverse = 1.0 / self.scale
        grads = [None if g is None else g * inverse for g in grads]
        finite = tf.reduce_all([tf.reduce_all(tf.math.is_finite(g)) for g in grads if g is not None])
        return grads, finite

    def update(self, finite: tf.Tensor) -> None:
        good = tf.where(finite, self.good + 1, tf.zeros_like(self.good))
        grow = good >= 2000
        self.scale.assign(tf.where(finite, tf.where(grow, self.scale * 2.0, self.scale), self.scale * 0.5))
        self.good.assign(tf.where(grow, tf.zeros_like(good), good))


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
    """Trains a :class:`TFModel` on the model that ends in logits when the loss takes logits.

    The step is traced once; ``options`` (precision, clipping, accumulation) are fixed when the
    trainer is made. With ``accumulate > 1`` two functions are traced: one adds a micro-batch's
    gradients (of its loss *sum*) to accumulators, the other divides them by the samples seen,
    clips and applies them. Mixed precision sets the Keras layers' dtype policy while the step is
    traced (weights stay float32, layers compute in float16/bfloat16), not while predict or
    export trace theirs.
    """

    def __init__(self, model: TFModel, optimizer: Optimizer, loss: Loss, seed: int | None = None,
                 options: StepOptions = StepOptions()) -> None:
        self.model = model
        self.loss = loss
        self.network = model.logits if loss.logits else model.native
        self.rule = _Rule(optimizer)
        self.options = options
        self.accumulate = options.accumulate
        self.policy = _POLICIES[options.precision]
        self.scaler = _LossScale() if options.precision == "16-mixed" else None
        with model.placed():
            self.lr = tf.Variable(optimizer.lr, dtype=tf.float64, trainable=False)
            self.steps = tf.Variable(0, dtype=tf.int64, trainable=False)
            self.samples = tf.Variable(0.0, dtype=_F32, trainable=False)
        self._lr_value = optimizer.lr
        self.slots: dict[tuple[str, str], dict[str, tf.Variable]] = {}
        self.sums: dict[tuple[str, str], tf.Variable] = {}    # accumulated gradients
        self._pending = 0
        # Keras' dropout draws from SeedGenerator states: reseeding assigns them
        self.seed_states = [v for v in model.native.variables if v.name == "seed_generator_state"]
        self.reseed(seed)
        # class ids (batch,); label sequences (batch, length) of any length; else any shape
        target = tf.TensorSpec((None,), tf.int64) if loss.task == "classes" else \
            tf.TensorSpec((None, None), tf.int64) if loss.task == "sequence" else tf.TensorSpec(None, loss.target_dtype)
        self.signature = [model.input_signature(), target, tf.TensorSpec((None,), _F32)]
        self._train = self._eval = self._apply = None  # traced on first use
        # a data-parallel run (llmasos.adapters.tf.distributed) sets these: the step runs as the
        # strategy's replica and ``combine`` sums the gradients across workers before the update
        self.strategy: tf.distribute.Strategy | None = None
        self.combine = None
        self._collect()

    def _collect(self) -> None:
        """(Re)collect the trainable weights, with their slots; existing slots persist."""
        trainable = {id(v) for v in self.model.native.trainable_variables}
        self.entries = [entry for entry in self.model.weight_variables if id(entry[2]) in trainable]
        with self.model.placed():
            for layer, name, var in self.entries:
                if (layer, name) not in self.slots:
                    self.slots[layer, name] = {slot: tf.Variable(tf.zeros(var.shape, _F32), trainable=False)
                                               for slot in self.rule.slots}
                if self.accumulate > 1 and (layer, name) not in self.sums:
                    self.sums[layer, name] = tf.Variable(tf.zeros(var.shape, _F32), trainable=False)
        self.version = self.model.trainable_version
        self._train = self._apply = None

    @contextmanager
    def _precision(self):
        """The layers' dtype policy for mixed precision while a step is traced."""
        if self.policy is None:
            yield
            return
        layers = list(self.model.native._flatten_layers(include_self=False))
        before = [layer.dtype_policy for layer in layers]
        for layer in layers:
            layer.dtype_policy = self.policy
        try:
            yield
        finally:
            for layer, policy in zip(layers, before):
                layer.dtype_policy = policy

    def _trace(self, step, signature=None, **options):
        # Calling the concrete function skips tf.function's argument matching: ~25% of a small step.
        with self._precision(), self.model.placed():
            return tf.function(step, input_signature=self.signature if signature is None else signature,
                               **options).get_concrete_function()

    def _forward(self, inputs, training: bool) -> tf.Tensor:
        out = self.network(dict(zip((i.name for i in self.model.spec.inputs), inputs)), training=training)
        return out[self.model.spec.outputs[0]]

    def _loss(self, out, target, weights) -> tf.Tensor:
        # the loss in float32 whatever the layers computed in
        return batch_loss(LOSS_OPS, self.loss, target, tf.cast(out, _F32), weights)

    def _gradients(self, inputs, target, weights, total: bool):
        """Loss, outputs and the gradients of the loss (of its batch sum with ``total``; scaled
        by the loss scale under "16-mixed")."""
        with tf.GradientTape() as tape:
            out = self._forward(inputs, True)
            value = self._loss(out, target, weights)
            objective = value * tf.cast(tf.shape(weights)[0], _F32) if total else value
            if self.scaler is not None:
                objective = objective * self.scaler.scale
        grads = tape.gradient(objective, [var for _, _, var in self.entries])
        if self.combine is not None:
            grads = self.combine(grads)
        return value, out, [None if g is None else tf.convert_to_tensor(g) for g in grads]

    def _update(self, grads: list) -> None:
        """Unscale, clip and apply mean gradients (skipped, as GradScaler does, when not finite)."""
        finite = None
        if self.scaler is not None:
            grads, finite = self.scaler.unscale(grads)
        if self.options.clip_grad_value is not None:
            limit = _scalar(self.options.clip_grad_value)
            grads = [None if g is None else tf.clip_by_value(g, -limit, limit) for g in grads]
        if self.options.clip_grad_norm is not None:
            grads = _clip_norm(grads, self.options.clip_grad_norm)

        def apply():
            step = self.steps.assign_add(1)
            scalars = self.rule.scalars(self.lr, step)
            for (layer, name, var), grad in zip(self.entries, grads):
                if grad is not None:  # weights that do not reach the loss are left alone, as in torch
                    self.rule.apply(var, grad, self.slots[layer, name], scalars)
            return tf.constant(True)

        if finite is None:
            apply()
        else:
            tf.cond(finite, apply, lambda: tf.constant(False))
            self.scaler.update(finite)

    def _train_step(self, inputs, target, weights):
        value, out, grads = self._gradients(inputs, target, weights, total=False)
        self._update(grads)
        return value, out

    def _accumulate_step(self, inputs, target, weights):
        value, out, grads = self._gradients(inputs, target, weights, total=True)
        self._reached = [g is not None for g in grads]   # read when _apply_step is traced, after this
        for (layer, name, _), grad in zip(self.entries, grads):
            if grad is not None:
                self.sums[layer, name].assign_add(grad)
        self.samples.assign_add(tf.cast(tf.shape(weights)[0], _F32))
        return value, out

    def _apply_step(self):
        inverse = 1.0 / self.samples
        sums = [self.sums[layer, name] for layer, name, _ in self.entries]
        self._update([tf.convert_to_tensor(s) * inverse if reached else None for s, reached in zip(sums, self._reached)])
        for total in sums:
            total.assign(tf.zeros_like(total))
        self.samples.assign(0.0)
        return tf.constant(True)

    def _on_replicas(self, step):
        return lambda *args: self.strategy.run(step, args=args)

    def _eval_step(self, inputs, target, weights):
        out = self._forward(inputs, False)
        return self._loss(out, target, weights), out

    def _target(self, target: np.ndarray) -> np.ndarray:
        if self.loss.task == "classes":
            return np.asarray(target, dtype=np.int64).reshape(-1)
        return np.asarray(target, dtype=self.loss.target_dtype)

    @staticmethod
    def _weights(weights: np.ndarray | None, count: int) -> np.ndarray:
        # one traced step for both: no weights are weights of one
        return np.ones(count, np.float32) if weights is None else np.asarray(weights, dtype=np.float32).reshape(-1)

    @property
    def pending(self) -> int:
        return self._pending

    def train_step(self, inputs: list[np.ndarray], target: np.ndarray, lr: float,
                   weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        if self.version != self.model.trainable_version:
            self._collect()
        if self._train is None:
            step = self._train_step if self.accumulate == 1 else self._accumulate_step
            if self.strategy is not None:
                step = self._on_replicas(step)
            self._train = self._trace(step, jit_compile=JIT_COMPILE)
        if lr != self._lr_value:  # assign only on change: a constant rate costs nothing per step
            self.lr.assign(lr)
            self._lr_value = lr
        value, out = self._train(self.model.feed(inputs), self._target(target), self._weights(weights, len(target)))
        if self.accumulate > 1:
            self._pending += 1
            if self._pending == self.accumulate:
                self.flush()
        return float(value) * len(target), _float32(out)

    def flush(self) -> bool:
        if self._pending == 0:
            return False
        if self._apply is None:
            self._apply = self._trace(self._apply_step, signature=[])
        self._apply()
        self._pending = 0
        return True

    def eval_step(self, inputs: list[np.ndarray], target: np.ndarray,
                  weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        if self._eval is None:
            self._eval = self._trace(self._eval_step)
        value, out = self._eval(self.model.feed(inputs), self._target(target), self._weights(weights, len(target)))
        return float(value) * len(target), _float32(out)

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
