"""Adversarial training (Madry et al., 2018): every training batch is replaced by the attack's
adversarial examples of it, made against the weights of that moment, before the step. It wraps the
adapter's trainer, so callbacks, checkpoints, metrics, class weights and step options compose
with it unchanged, in either framework:

```python
from llmasos import robust
model.train(train, Optimizer("Adam", lr=0.001), epochs=15,
            adversarial=robust.PGD(eps=0.1, alpha=0.01, steps=10))
```

The attack runs in inference mode (dropout off, BatchNorm on its running statistics, the
trainer's mode restored after), as torchattacks and Madry's code do. Each step draws its own
random start, from the attack's ``seed`` and the step's number, so a seeded run repeats.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..adapters.base import Trainer
from ..errors import TrainingError
from .attacks import FGSM, PGD, make_attack

if TYPE_CHECKING:
    from ..model import Model


def adversarial_attack(adversarial: Any, model: "Model") -> FGSM | PGD:
    """The attack ``train(adversarial=)`` takes: an :class:`FGSM`/:class:`PGD` object or its name,
    on a classifier with one float input."""
    try:
        attack = make_attack(adversarial)
    except Exception as error:
        raise TrainingError(f"adversarial= takes robust.PGD(eps=..., alpha=..., steps=...), robust.FGSM(eps=...) "
                            f"or their names; {error}") from None
    if model.spec.final_activation() not in ("softmax", "sigmoid"):
        raise TrainingError(f"adversarial training attacks a classifier's labels; this model ends in "
                            f"{model.spec.final_activation()!r}, not softmax or sigmoid")
    return attack


class AdversarialTrainer(Trainer):
    """``trainer`` stepping on ``attack(model, batch, labels)`` in place of each batch."""

    def __init__(self, trainer: Trainer, model: "Model", attack: FGSM | PGD) -> None:
        self.trainer, self.model, self.attack = trainer, model, attack
        self.accumulate = getattr(trainer, "accumulate", 1)
        self.steps = 0

    def _adversarial(self, inputs: list[np.ndarray], target: np.ndarray) -> list[np.ndarray]:
        attack = self.attack
        if isinstance(attack, PGD) and attack.random_start and attack.seed is not None:
            # a fresh random start per batch (the same seed would draw the same noise each time)
            attack = replace(attack, seed=(attack.seed * 1_000_003 + self.steps) % 2**32)
        self.steps += 1
        return [attack(self.model, inputs[0], target)]

    def train_step(self, inputs, target, lr, weights=None):
        step_weights = {} if weights is None else {"weights": weights}
        return self.trainer.train_step(self._adversarial(inputs, target), target, lr, **step_weights)

    def eval_step(self, inputs, target, weights=None):
        # validation measures the clean data, as Keras' fit would; robust.evaluate measures attacks
        return self.trainer.eval_step(inputs, target, **({} if weights is None else {"weights": weights}))

    @property
    def pending(self) -> int:
        return getattr(self.trainer, "pending", 0)

    def flush(self) -> bool:
        return self.trainer.flush()

    def reseed(self, seed: int | None) -> None:
        self.trainer.reseed(seed)

    def get_state(self) -> dict:
        return self.trainer.get_state()

    def set_state(self, state: dict) -> None:
        self.trainer.set_state(state)
