"""The interface every framework adapter implements.

An adapter is a folder ``llmasos/adapters/<name>/`` whose ``__init__`` defines ``BACKEND``, an
instance of :class:`Backend`. It is the only place its framework is imported. Everything that
crosses this interface is NumPy or plain data:

* weights as ``{layer_name: {weight_name: ndarray}}`` in the neutral layout of
  :mod:`llmasos.layers`;
* inputs as a list of arrays, one per spec input, channels first;
* optimizer state as ``{"step": int, "slots": {slot: weights-like dict}}`` with the neutral slot
  names of :data:`llmasos.optim.SLOTS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import SpecError, TrainingError
from ..losses import LOSSES  # noqa: F401  (re-exported for the training loop until it imports llmasos.losses)
from ..optim import Optimizer
from ..spec import ModelSpec

Weights = dict[str, dict[str, np.ndarray]]

# Lightning's names; a precision names the autocast dtype, weights stay float32 in every case
PRECISIONS = ("32", "16-mixed", "bf16-mixed")
_PRECISION_ALIASES = {"32": "32", "32-true": "32", "16": "16-mixed", "16-mixed": "16-mixed",
                      "bf16": "bf16-mixed", "bf16-mixed": "bf16-mixed"}


@dataclass(frozen=True)
class StepOptions:
    """How a trainer steps, fixed when it is made (a traced step never retraces for them).

    * ``precision``: "32"; "16-mixed" (autocast to float16 with dynamic loss scaling, as
      ``torch.amp.GradScaler``); "bf16-mixed" (autocast to bfloat16, no scaling). Weights,
      optimizer state and the loss stay float32.
    * ``clip_grad_norm``: rescale the gradients when their global L2 norm over every trainable
      weight exceeds it (``torch.nn.utils.clip_grad_norm_``); ``clip_grad_value``: clamp each
      gradient element to ``[-v, v]`` (``clip_grad_value_``); value first when both are given.
    * ``accumulate``: micro-batches per optimizer step; the step applies the mean gradient over
      every sample of its micro-batches, so ``accumulate=4`` at batch 16 is batch 64.

    >>> StepOptions(precision="bf16").precision
    'bf16-mixed'
    """

    precision: str = "32"
    clip_grad_norm: float | None = None
    clip_grad_value: float | None = None
    accumulate: int = 1

    def __post_init__(self) -> None:
        key = str(self.precision).lower()
        if key not in _PRECISION_ALIASES:
            raise TrainingError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        object.__setattr__(self, "precision", _PRECISION_ALIASES[key])
        for name in ("clip_grad_norm", "clip_grad_value"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0):
                raise TrainingError(f"{name} must be a positive number or None, got {value!r}")
        if not isinstance(self.accumulate, int) or isinstance(self.accumulate, bool) or self.accumulate < 1:
            raise TrainingError(f"accumulate must be a positive int (micro-batches per step), got {self.accumulate!r}")


class Trainer(ABC):
    """Steps one compiled model with one optimizer and loss.

    ``loss`` is a :class:`llmasos.losses.Loss`; losses that take logits get them: when the spec ends
    in softmax or sigmoid the adapter leaves that activation out while training (never applying it
    twice). Losses are means over the batch; ``weights`` (float32, one per sample) weigh each
    sample's loss as Keras' ``sample_weight`` does (``sum(w_i * l_i) / batch``, its
    ``sum_over_batch_size`` reduction). Steps return the batch *sum* (mean × batch size) and
    the batch's outputs as NumPy (logits for the classification losses), from which the neutral
    training loop computes every metric (:mod:`llmasos.metrics`) — so metrics are the same code,
    and the same numbers, whichever framework ran the step.
    """

    @abstractmethod
    def train_step(self, inputs: list[np.ndarray], target: np.ndarray, lr: float,
                   weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """One gradient step at learning rate ``lr``; returns (loss sum, outputs of the forward pass)."""

    @abstractmethod
    def eval_step(self, inputs: list[np.ndarray], target: np.ndarray,
                  weights: np.ndarray | None = None) -> tuple[float, np.ndarray]:
        """Loss sum and outputs in inference mode, no update."""

    accumulate: int = 1   # micro-batches per optimizer step (StepOptions.accumulate)

    @property
    def pending(self) -> int:
        """Micro-batches whose gradients wait for the optimizer step (0 right after a step)."""
        return 0

    def flush(self) -> bool:
        """Apply the gradients of an incomplete group of micro-batches (at the end of an epoch);
        True when that made an optimizer step."""
        return False

    @abstractmethod
    def reseed(self, seed: int | None) -> None:
        """Seed the framework's random streams (dropout); ``None`` leaves them as they are."""

    @abstractmethod
    def get_state(self) -> dict:
        """Optimizer state in the neutral layout: ``{"step": int, "slots": {...}}``."""

    @abstractmethod
    def set_state(self, state: dict) -> None:
        """Restore what :meth:`get_state` returned (possibly from another framework)."""


class CompiledModel(ABC):
    """A spec compiled into one framework's native model."""

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec

    @property
    @abstractmethod
    def native(self) -> Any:
        """The framework's own object (``torch.nn.Module``, ``keras.Model``)."""

    @abstractmethod
    def to(self, device: str) -> None:
        """Move the weights to ``device`` (a neutral name; a trainer made before must be remade)."""

    @abstractmethod
    def get_weights(self) -> Weights:
        """All weights, neutral layout, as float32 NumPy arrays (on the CPU, whatever the device)."""

    @abstractmethod
    def set_weights(self, weights: Weights) -> None:
        """Load neutral weights; call :func:`check_weights` first."""

    @abstractmethod
    def predict(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Inference mode (dropout off, BatchNorm running statistics); one array per output."""

    @abstractmethod
    def trainer(self, optimizer: Optimizer, loss: Any, seed: int | None = None,
                options: StepOptions = StepOptions()) -> Trainer:
        """A trainer for this model: ``loss`` a name, canonical text or :class:`llmasos.losses.Loss`."""

    @abstractmethod
    def set_trainable(self, layer_names: set[str], trainable: bool) -> None:
        """Freeze or unfreeze the weights of the named layers (statistics included)."""

    @abstractmethod
    def input_gradient(self, inputs: list[np.ndarray], target: np.ndarray, loss: Any) -> list[np.ndarray]:
        """The gradient of the batch's mean ``loss`` (a name, canonical text or
        :class:`llmasos.losses.Loss`) with respect to each input, in inference mode (the model's
        mode restored after), on the outputs the loss takes (logits for the classification
        losses); weights and optimizer state untouched. Adversarial attacks (:mod:`llmasos.robust`)
        are built on it."""


class Backend(ABC):
    """One framework."""

    name: str
    package: str        # the pip extra that brings it: pip install "llmasos[<package>]"

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def build(self, spec: ModelSpec, seed: int | None = None, device: str = "cpu") -> CompiledModel:
        """Compile the spec on ``device`` (:mod:`llmasos.devices`), initialising weights with the
        framework's defaults (seeded)."""

    @abstractmethod
    def devices(self) -> list[str]:
        """The devices this framework can use here, by neutral name ("cpu" first)."""

    @abstractmethod
    def export_onnx(self, model: CompiledModel, path: str, opset: int | None = None, *,
                    external_data: bool = False) -> dict:
        """Write ``model`` (inference mode) to ONNX at ``path``, its weights in ``<path>.data``
        with ``external_data`` (models over 2 GiB); returns notes for the export report."""


def check_weights(spec: ModelSpec, weights: Weights) -> None:
    """Raise a :class:`SpecError` naming the layer, weight and shapes when weights don't fit."""
    expected = spec.weight_shapes()
    missing = [f"{layer}/{name}" for layer, ws in expected.items() for name in ws if name not in weights.get(layer, {})]
    extra = [f"{layer}/{name}" for layer, ws in weights.items() for name in ws if name not in expected.get(layer, {})]
    if missing or extra:
        raise SpecError("weights do not match the model: "
                        + (f"missing {', '.join(missing)}" if missing else "")
                        + ("; " if missing and extra else "")
                        + (f"unexpected {', '.join(extra)}" if extra else ""))
    for layer, ws in expected.items():
        for name, shape in ws.items():
            got = tuple(np.shape(weights[layer][name]))
            if got != shape:
                raise SpecError(f"weight {layer}/{name} has shape {got}, the model needs {shape}")
