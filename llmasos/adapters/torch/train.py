"""Training steps in torch: torch.optim is the reference for llmasos' optimizer semantics."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from ...losses import CrossEntropy, Loss, batch_loss
from ...optim import Optimizer
from ..base import StepOptions, Trainer, Weights
from .losses import LOSS_OPS
from .weights import CONVERSIONS

if TYPE_CHECKING:
    from .build import TorchModel

# neutral slot name -> torch.optim state key, per optimizer kind
_STATE_KEYS = {
    "sgd": {"momentum": "momentum_buffer"},
    "adam": {"m": "exp_avg", "v": "exp_avg_sq"},
    "adamw": {"m": "exp_avg", "v": "exp_avg_sq"},
    "rmsprop": {"v": "square_avg", "momentum": "momentum_buffer"},
}


# Devices whose fused optimizer kernels llmasos runs (torch has them for SGD, Adam and AdamW there)
_FUSED_DEVICES = ("cpu", "cuda")


def _make_optimizer(optimizer: Optimizer, params, device: torch.device) -> torch.optim.Optimizer:
    o = optimizer.options
    # fused: one kernel updates every parameter in one pass over its memory. torch.optim's default
    # on the CPU is a Python loop over parameters, and foreach is no faster there (each foreach op
    # still makes its own pass and list of temporaries): measured per Adam step on the 784-128-10
    # MLP (shared 2-core EPYC, 1 thread), loop 636 us, foreach 859 us, fused 354 us. RMSprop has no
    # fused kernel: torch's default there.
    fast = {"fused": True} if device.type in _FUSED_DEVICES else {}
    if optimizer.kind == "sgd":
        return torch.optim.SGD(params, lr=optimizer.lr, momentum=o["momentum"], nesterov=o["nesterov"],
                               weight_decay=o["weight_decay"], **fast)
    if optimizer.kind in ("adam", "adamw"):
        cls = torch.optim.Adam if optimizer.kind == "adam" else torch.optim.AdamW
        return cls(params, lr=optimizer.lr, betas=o["betas"], eps=o["eps"], weight_decay=o["weight_decay"], **fast)
    return torch.optim.RMSprop(params, lr=optimizer.lr, alpha=o["alpha"], eps=o["eps"], momentum=o["momentum"],
                               weight_decay=o["weight_decay"])


def _native_loss(loss: Loss):
    """``(logits, labels, weights) -> mean loss`` with one torch op where a built-in loss is exactly
    ``F.cross_entropy`` (its ``label_smoothing`` is torch's), else None. The neutral form
    (:func:`llmasos.losses.batch_loss`) costs four more ops and autograd nodes per step, a
    measurable share of a small model's step; the numbers are the same formula. Only 2-D logits
    with one label per row: anything else (sequences, a user's subclass) goes the neutral way."""
    if type(loss) is not CrossEntropy:
        return None
    smoothing = float(loss.params["label_smoothing"])

    def cross_entropy(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None):
        if weights is None:
            return F.cross_entropy(logits, labels, label_smoothing=smoothing)
        return (F.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing) * weights).mean()
    return cross_entropy


def _numpy(out: torch.Tensor) -> np.ndarray:
    """The outputs as NumPy for the neutral metrics (a view of a CPU tensor's memory, no copy)."""
    values = out.detach()
    if values.dtype != torch.float32:  # autocast outputs: the metrics read float32
        values = values.float()
    return values.numpy() if values.device.type == "cpu" else values.cpu().numpy()


class TorchTrainer(Trainer):
    def __init__(self, model: "TorchModel", optimizer: Optimizer, loss: Loss, seed: int | None = None,
                 options: StepOptions = StepOptions()) -> None:
        self.model = model
        self.module = model.module
        self.loss = loss
        self.logits = loss.logits
        self.kind = optimizer.kind
        if seed is not None:
            torch.manual_seed(seed)
        self.params = [p for p in self.module.parameters() if p.requires_grad]
        self.optimizer = _make_optimizer(optimizer, self.params, model.device)
        self._native_loss = _native_loss(loss)
        self.steps = 0
        self._lr: float | None = None
        # what train steps call: the module, or its DistributedDataParallel wrapper in a
        # data-parallel run (llmasos.adapters.torch.distributed); evaluation calls the module
        self.network: torch.nn.Module = self.module
        self.options = options
        self.accumulate = options.accumulate
        self._pending = 0            # micro-batches accumulated since the last optimizer step
        self._samples = 0            # ... and the samples they held
        device = model.device.type
        self._autocast = None if options.precision == "32" else \
            (device, torch.float16 if options.precision == "16-mixed" else torch.bfloat16)
        self.scaler = torch.amp.GradScaler(device) if options.precision == "16-mixed" else None

    def reseed(self, seed):
        if seed is None:
            return
        if self.model.device.type == "cpu":
            # only the CPU generator draws for a CPU model; torch.manual_seed also seeds every
            # accelerator's, formatting a stack trace for each lazy call (~5 ms, every epoch)
            torch.default_generator.manual_seed(seed)
        else:
            torch.manual_seed(seed)

    def _forward(self, inputs: list[np.ndarray], network: torch.nn.Module | None = None) -> torch.Tensor:
        tensors = self.model.to_tensors(inputs)
        network = self.module if network is None else network
        if self._autocast is None:
            return network(*tensors, logits=self.logits)
        with torch.autocast(self._autocast[0], dtype=self._autocast[1]):
            return network(*tensors, logits=self.logits)

    def _target(self, target: np.ndarray) -> torch.Tensor:
        return self.model.to_device(torch.from_numpy(np.ascontiguousarray(target)))

    def _loss(self, out: torch.Tensor, target: np.ndarray, weights: np.ndarray | None) -> torch.Tensor:
        w = None if weights is None else \
            self.model.to_device(torch.from_numpy(np.ascontiguousarray(weights, dtype=np.float32)))
        # the loss in float32 whatever autocast computed (as transformers' losses do)
        out, labels = out.float(), self._target(target)
        if self._native_loss is not None and out.dim() == 2 and labels.dim() == 1:
            return self._native_loss(out, labels, w)
        return batch_loss(LOSS_OPS, self.loss, labels, out, w)

    def _train_mode(self) -> None:
        if not self.module.training:  # switching modes walks every module: only do it when it changes
            self.model.train_mode()

    @property
    def pending(self) -> int:
        return self._pending

    def train_step(self, inputs, target, lr, weights=None):
        self._train_mode()
        if lr != self._lr:
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self._lr = lr
        out = self._forward(inputs, self.network)
        value = self._loss(out, target, weights)
        if self._pending == 0:
            # what optimizer.zero_grad(set_to_none=True) does, without its profiler scope and
            # grouping (the optimizer holds exactly self.params)
            for p in self.params:
                p.grad = None
        # accumulating: gradients of each micro-batch's loss *sum*, divided by all their samples at the step
        scaled = value if self.accumulate == 1 else value * len(target)
        (scaled if self.scaler is None else self.scaler.scale(scaled)).backward()
        self._pending += 1
        self._samples += len(target)
        if self._pending == self.accumulate:
            self._step()
        return value.item() * len(target), _numpy(out)

    def flush(self) -> bool:
        if self._pending == 0:
            return False
        self._step()
        return True

    def _step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        if self.accumulate > 1:
            torch._foreach_mul_([p.grad for p in self.params if p.grad is not None], 1.0 / self._samples)
        if self.options.clip_grad_value is not None:
            torch.nn.utils.clip_grad_value_(self.params, self.options.clip_grad_value, foreach=True)
        if self.options.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.params, self.options.clip_grad_norm, foreach=True)
        if self.scaler is None:
            self.optimizer.step()
            self.steps += 1
        else:
            scale = self.scaler.get_scale()
            self.scaler.step(self.optimizer)     # skipped when the scaled gradients overflowed
            self.scaler.update()
            self.steps += int(self.scaler.get_scale() >= scale)
        self._pending = self._samples = 0

    def eval_step(self, inputs, target, weights=None):
        self.module.eval()
        with torch.inference_mode():
            out = self._forward(inputs)
            return self._loss(out, target, weights).item() * len(target), _numpy(out)

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
                    value = join(*(s[key].detach().cpu().numpy() for s in states))
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
                    entry[key] = torch.from_numpy(np.array(part)).to(tensor.device)
                    if self.kind != "sgd":
                        # a fused optimizer keeps its step count as float32 on the parameter's device
                        fused = self.optimizer.defaults.get("fused")
                        entry["step"] = torch.tensor(float(self.steps), dtype=torch.float32,
                                                     device=tensor.device if fused else "cpu")
