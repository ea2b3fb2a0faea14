"""The loss primitives of :class:`llmasos.losses.LossOps` on TensorFlow tensors; :data:`LOSS_OPS`
is what losses get."""

from __future__ import annotations

import tensorflow as tf

from ...losses import LossOps
from .ops import TFOps


class TFLossOps(TFOps, LossOps):
    def log_softmax(self, x, axis=-1):
        return tf.nn.log_softmax(x, axis=axis)

    def softplus(self, x):
        return tf.math.softplus(x)

    def cast(self, x, dtype):
        return tf.cast(x, dtype)

    def sparse_cross_entropy(self, logits, labels):
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)

    def ctc(self, log_probs, labels, label_lengths, blank, zero_infinity, frame_lengths=None):
        shape = tf.shape(log_probs)
        labels, label_lengths = tf.cast(labels, tf.int32), tf.cast(label_lengths, tf.int32)
        frames = tf.fill([shape[0]], shape[1]) if frame_lengths is None else tf.cast(frame_lengths, tf.int32)
        nll = tf.nn.ctc_loss(labels, log_probs, label_lengths, frames, logits_time_major=False, blank_index=blank)
        # TensorFlow returns a finite number where no alignment exists (fewer frames than labels plus
        # the blanks between repeats); torch says inf, or 0 with zero_infinity
        counted = tf.sequence_mask(label_lengths, tf.shape(labels)[1])
        repeats = tf.reduce_sum(tf.cast((labels[:, 1:] == labels[:, :-1]) & counted[:, 1:], tf.int32), axis=1)
        impossible = label_lengths + repeats > frames
        return tf.where(impossible, tf.zeros_like(nll) if zero_infinity else tf.fill(tf.shape(nll), float("inf")), nll)


LOSS_OPS = TFLossOps()
