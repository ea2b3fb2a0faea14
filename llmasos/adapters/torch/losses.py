"""The loss primitives of :class:`llmasos.losses.LossOps` on torch tensors (torch.nn.functional,
the reference the neutral losses are checked against); :data:`LOSS_OPS` is what losses get."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...losses import LossOps
from .ops import TorchOps

_DTYPES = {"float32": torch.float32, "int64": torch.int64}


class TorchLossOps(TorchOps, LossOps):
    def log_softmax(self, x, axis=-1):
        return F.log_softmax(x, dim=axis)

    def softplus(self, x):
        return F.softplus(x)

    def cast(self, x, dtype):
        return x.to(_DTYPES[dtype])

    def sparse_cross_entropy(self, logits, labels):
        flat = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), reduction="none")
        return flat.reshape(labels.shape)

    def ctc(self, log_probs, labels, label_lengths, blank, zero_infinity, frame_lengths=None):
        frames = torch.full((log_probs.shape[0],), log_probs.shape[1], dtype=torch.int64, device=log_probs.device) \
            if frame_lengths is None else frame_lengths
        return F.ctc_loss(log_probs.transpose(0, 1), labels, frames, label_lengths, blank=blank, reduction="none",
                          zero_infinity=zero_infinity)


LOSS_OPS = TorchLossOps()
