"""tf.distribute for llmasos' data-parallel runs: MultiWorkerMirroredStrategy over ``TF_CONFIG``.

Keras 3 does not support this strategy for its own ``fit`` (keras-team/keras#20585). llmasos uses
neither ``fit`` nor Keras' optimizers: its step is a hand-written ``tf.function``
(:mod:`llmasos.adapters.tf.train`) updating the model's variables, so the strategy is asked only
for what TensorFlow itself does — run the step as its replica and all-reduce / all-gather tensors
between the workers (RING collectives on CPU). The variables stay ordinary ones, the same on every
worker: rank 0's weights are broadcast when a trainer is attached, and each update is computed from
the same summed gradient (each worker's weighted by its share of the global batch).

TensorFlow configures collectives once, before its first op: the strategy must exist before any
model is built (:func:`join` says so when it is too late). ``train(nproc=N)`` workers and
``llmasos train`` under a TFJob join first.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from ...distributed import Rank
from ...errors import TrainingError
from .train import TFTrainer

_SUM = tf.distribute.ReduceOp.SUM


def join(rank: Rank, timeout_s: float) -> "TFGroup":
    options = tf.distribute.experimental.CommunicationOptions(
        implementation=tf.distribute.experimental.CommunicationImplementation.RING, timeout_seconds=timeout_s)
    try:
        strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    except RuntimeError as err:
        if "startup" not in str(err):
            raise
        raise TrainingError("TensorFlow sets up its collectives before its first op, and this process already ran "
                            "TensorFlow ops: call llmasos.distributed.group('tf') at the start of the program, before "
                            "building or loading a model") from None
    return TFGroup(rank, strategy)


class TFGroup:
    def __init__(self, rank: Rank, strategy: tf.distribute.Strategy) -> None:
        self.rank, self.strategy = rank, strategy
        self.share = tf.Variable(1.0 / rank.world, dtype=tf.float32, trainable=False)
        self._share_value = 1.0 / rank.world
        replica = tf.distribute.get_replica_context

        @tf.function(input_signature=[tf.TensorSpec((None,), tf.int32)])
        def gather(values):
            return strategy.run(lambda v: replica().all_gather(v[None], axis=0), args=(values,))

        @tf.function
        def broadcast(values):
            first = tf.cast(self.rank.rank == 0, tf.float32)
            return strategy.run(lambda vs: replica().all_reduce(_SUM, [v * first for v in vs]), args=(values,))

        self._gather, self._broadcast = gather, broadcast

    def attach(self, trainer: TFTrainer) -> None:
        if trainer.strategy is self.strategy:
            return
        variables = [var for _, _, var in trainer.model.weight_variables]
        for var, value in zip(variables, self._broadcast([tf.convert_to_tensor(v) for v in variables])):
            var.assign(value)
        trainer.strategy, trainer.combine, trainer._train = self.strategy, self._combine, None

    def _combine(self, grads: list) -> list:
        """In the replica: sum ``share × gradient`` over the workers (None stays None)."""
        present = [i for i, g in enumerate(grads) if g is not None]
        summed = tf.distribute.get_replica_context().all_reduce(
            _SUM, [tf.convert_to_tensor(grads[i]) * self.share for i in present])
        out = list(grads)
        for i, value in zip(present, summed):
            out[i] = value
        return out

    def set_share(self, share: float) -> None:
        if share != self._share_value:   # assign only on change
            self.share.assign(share)
            self._share_value = share

    def expect(self, sizes: list[int]) -> None:
        """The outputs travel apart from the gradients here (:meth:`gather`)."""

    def fused(self, trainer: TFTrainer, target: np.ndarray, weights: np.ndarray | None) -> None:
        return None

    def gather(self, payload: np.ndarray) -> list[np.ndarray]:
        size = len(payload)
        padded = np.zeros(-(-size // 4) * 4, dtype=np.uint8)   # collectives move int32 here, not bytes
        padded[:size] = payload
        gathered = self._gather(tf.constant(padded.view(np.int32))).numpy()
        return [np.ascontiguousarray(row).view(np.uint8)[:size] for row in gathered]

    def barrier(self) -> None:
        self._gather(tf.zeros((1,), tf.int32))
