"""Training steps in torch: torch.optim is the reference for llmasos' optimizer semantics."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ...optim import Optimizer
from ..base import Trainer, Weights
from .build import TorchModel, train_mode
from .weights import CONVERSIONS

# neutral slot name -> torch.optim state key, per optimizer kind
_STATE_KEYS = {
    "sgd": {"momentum": "momentum_buffer"},
    "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "adamw": {"m": "exp_avg", "v": "exp_avg_sq"},
    "rmsprop": {"v": "square_avg", "momentum": "momentum_buffer"},
}


def _make_optimizer(optimizer: Optimizer, params) -> torch.optim.Optimizer:
    o = optimizer.options
    # foreach: one multi-tensor kernel per update instead of a Python loop over parameters (torch
    # picks it by default on CUDA only; on CPU it saves several dispatches per weight per step)
    if optimizer.kind == "sgd":
        return torch.optim.SGD(params, lr=optimizer.lr, momentum=o["momentum"], nesterov=o["nesterov"],
                               weight_decay=o["weight_decay"], foreach=True)
    if optimizer.kind in ("adam", "adamw"):
        cls = torch.optim.Adam if optimizer.kind == "adam" else torch.optim.AdamW
        return cls(params, lr=optimizer.lr, betas=o["betas"], eps=o["eps"], weight_decay=o["weight_decay"],
                   foreach=True)
    return torch.optim.RMSprop(params, lr=optimizer.lr, alpha=o["alpha"], eps=o["eps"], momentum=o["momentum"],
                               weight_decay=o["weight_decay"], foreach=True)


def compute_loss(loss: str, out: torch.Tensor, target: torch.Tensor,
                 weights: torch.Tensor | None = None) -> torch.Tensor:
    """The batch loss; classification losses take logits. Without ``weights`` the mean over the
    batch; with them Keras' ``sum_over_batch_size``: ``sum(w_i * l_i) / batch``, where ``l_i`` is
    sample i's loss (the mean over its output units)."""
    reduction = "mean" if weights is None else "none"
    if loss == "cross_entropy":
        values = F.cross_entropy(out, target, reduction=reduction)
    else:
        target = target.to(out.dtype).reshape(out.shape)
        if loss == "binary_cross_entropy":
            values = F.binary_cross_entropy_with_logits(out, target, reduction=reduction)
        elif loss == "mse":
            values = F.mse_loss(out, target, reduction=reduction)
        else:
            values = F.l1_loss(out, target, reduction=reduction)
    if weights is None:
        return values
    per_sample = values.reshape(len(values), -1).mean(dim=1)
    return (per_sample * weights).sum() / len(per_sample)


def _numpy(out: torch.Tensor) -> np.ndarray:
    """The outputs as NumPy for the neutral metrics (a view of a CPU tensor's memory, no copy)."""
    values = out.detach()
    return values.numpy() if values.device.type == "cpu" else values.cpu().numpy()


class TorchTrainer(Trainer):
    def __init__(self, model: TorchModel, optimizer: Optimizer, loss: str, seed: int | None = None) -> None:
        self.model = model
        self.module = model.module
        self.loss = loss
        self.logits = loss in ("cross_entropy", "binary_cross_entropy")
        self.kind = optimizer.kind
        if seed is not None:
            torch.manual_seed(seed)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = _make_optimizer(optimizer, self.params)
        self.steps = 0
        self._lr: float | None = None
        # what train steps call: the module, or its DistributedDataParallel wrapper in a
        # data-parallel run (llmasos.adapters.torch.distributed); evaluation calls the module
        self.network: torch.nn.Module = self.module

    def reseed(self, seed):
        if seed is not None:
            torch.manual_seed(seed)

    def _forward(self, inputs: list[np.ndarray], network: torch.nn.Module | None = None) -> torch.Tensor:
        return (self.module if network is None else network)(*self.model.to_tensors(inputs), logits=self.logits)

    def _target(self, target: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(target))

    def _train_mode(self) -> None:
        if not self.module.training:  # switching modes walks every module: only do it when it changes
            train_mode(self.module)

    def _weights(self, weights: np.ndarray | None) -> torch.Tensor | None:
        return None if weights is None else torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32))

    def train_step(self, inputs, target, lr, weights=None):
        self._train_mode()
        if lr != self._lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._lr = lr
        out = self._forward(inputs, self.network)
        value = compute_loss(self.loss, out, self._target(target), self._weights(weights))
        self.optimizer.zero_grad(set_to_none=True)
        value.backward()
        self.optimizer.step()
        self.steps += 1
        return value.item() * len(target), _numpy(out)

    def eval_step(self, inputs, target, weights=None):
        self.module.eval()
        with torch.inference_mode():
            out = self._forward(inputs)
            value = compute_loss(self.loss, out, self._target(target), self._weights(weights))
            return value.item() * len(target), _numpy(out)

    def _slots(self):
        """(layer kind, layer, weight, tensors) for trainable neutral weights."""
        kinds = {layer.name: layer.kind for layer in self.model.spec.layers}
        trainable = {id(p) for p in self.params}
        for layer, name, tensors in self.model.native_weights():
            if all(id(t) in trainable for t in tensors):
                yield kinds[layer], layer, name, tensors

    def get_state(self) -> dict:
        slots: dict[str, Weights] = {}
        for kind, layer, name, tensors in self._slots():
            states = [self.optimizer.state.get(t, {}) for t in tensors]
            for slot, key in _STATE_KEYS[self.kind].items():
                if all(key in s for s in states):
                    join = CONVERSIONS[kind][name][2]
                    value = join(*(s[key].detach().numpy() for s in states))
                    slots.setdefault(slot, {}).setdefault(layer, {})[name] = value.astype(np.float32)
        return {"step": self.steps, "slots": slots}

    def set_state(self, state: dict) -> None:
        self.steps = int(state.get("step", 0))
        slots = state.get("slots", {})
        for kind, layer, name, tensors in self._slots():
            split = CONVERSIONS[kind][name][1]
            for slot, key in _STATE_KEYS[self.kind].items():
                value = slots.get(slot, {}).get(layer, {}).get(name)
                if value is None:
                    continue
                for tensor, part in zip(tensors, split(np.asarray(value, dtype=np.float32))):
                    entry = self.optimizer.state[tensor]
                    entry[key] = torch.from_numpy(np.array(part))
                    if self.kind != "sgd":
                        entry["step"] = torch.tensor(float(self.steps))
