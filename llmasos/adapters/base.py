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
from typing import Any

import numpy as np

from ..errors import SpecError
from ..optim import Optimizer
from ..spec import ModelSpec

Weights = dict[str, dict[str, np.ndarray]]

LOSSES = ("cross_entropy", "binary_cross_entropy", "mse", "mae")


class Trainer(ABC):
    """Steps one compiled model with one optimizer and loss.

    ``loss`` is one of :data:`LOSSES`; the classification losses take logits: when the spec ends
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
    def get_weights(self) -> Weights:
        """All weights, neutral layout, as float32 NumPy arrays."""

    @abstractmethod
    def set_weights(self, weights: Weights) -> None:
        """Load neutral weights; call :func:`check_weights` first."""

    @abstractmethod
    def predict(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        """Inference mode (dropout off, BatchNorm running statistics); one array per output."""

    @abstractmethod
    def trainer(self, optimizer: Optimizer, loss: str, seed: int | None = None) -> Trainer:
        """A trainer for this model."""

    @abstractmethod
    def set_trainable(self, layer_names: set[str], trainable: bool) -> None:
        """Freeze or unfreeze the weights of the named layers (statistics included)."""


class Backend(ABC):
    """One framework."""

    name: str
    package: str        # the pip extra that brings it: pip install "llmasos[<package>]"

    @abstractmethod
    def version(self) -> str: ...

    @abstractmethod
    def build(self, spec: ModelSpec, seed: int | None = None) -> CompiledModel:
        """Compile the spec, initialising weights with the framework's defaults (seeded)."""

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
