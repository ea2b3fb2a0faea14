"""The gradient of a loss with respect to a model's inputs, for adversarial attacks
(:mod:`llmasos.robust`): in inference mode, on the outputs the loss takes (logits for the
classification losses), the loss computed as training computes it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from ... import losses
from .losses import LOSS_OPS

if TYPE_CHECKING:
    from .build import TorchModel


def input_gradient(model: "TorchModel", inputs: list[np.ndarray], target: np.ndarray, loss: Any) -> list[np.ndarray]:
    """d(batch mean loss)/d(inputs), one array per input; the module's mode is restored after and
    no weight's ``.grad`` is touched."""
    loss = losses.get(loss).for_activation(model.spec.final_activation())
    module = model.module
    was_training = module.training
    if was_training:
        module.eval()
    try:
        with torch.enable_grad():
            # leaves of their own (no copy: nothing writes to them)
            tensors = [t.detach().requires_grad_(True) for t in model.to_tensors(inputs)]
            out = module(*tensors, logits=loss.logits)
            labels = model.to_device(torch.from_numpy(np.ascontiguousarray(target)))
            value = losses.batch_loss(LOSS_OPS, loss, labels, out.float())
            grads = torch.autograd.grad(value, tensors)
    finally:
        if was_training:
            model.train_mode()
    return [g.detach().cpu().numpy() for g in grads]
