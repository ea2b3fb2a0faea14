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

With ``nproc=N`` the attack travels to the workers as plain data (:func:`attack_config`, never
pickled); each rank attacks only its own rows of the global batch, with the random start drawn
for the whole batch (``pgd(within=...)``), so N processes train on the adversarial examples one
process would: the same weights, up to float rounding in the gradients.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import distributed
from ..adapters.base import Trainer
from ..errors import TrainingError
from .attacks import FGSM, PGD, fgsm, pgd
from .catalog import make_attack

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
    if not isinstance(attack, (FGSM, PGD)):
        raise TrainingError(f"adversarial= takes robust.PGD(eps=..., alpha=..., steps=...) or robust.FGSM(eps=...) "
                            f"(an attack at a fixed eps), not {type(attack).__name__}")
    if model.spec.final_activation() not in ("softmax", "sigmoid"):
        raise TrainingError(f"adversarial training attacks a classifier's labels; this model ends in "
                            f"{model.spec.final_activation()!r}, not softmax or sigmoid")
    return attack


def attack_config(attack: FGSM | PGD) -> dict:
    """The attack as plain data (JSON), for ``train(nproc=N)``'s worker processes."""
    fields = {name: getattr(attack, name) for name in attack.__dataclass_fields__}
    if fields.get("bounds") is not None:
        fields["bounds"] = [float(b) for b in fields["bounds"]]
    return {"kind": type(attack).__name__, **fields}


def attack_from_config(config: dict) -> FGSM | PGD:
    """The attack :func:`attack_config` described."""
    fields = dict(config)
    kind = {"FGSM": FGSM, "PGD": PGD}.get(fields.pop("kind", None))
    if kind is None:
        raise TrainingError(f"adversarial training rebuilds FGSM and PGD attacks, not {config.get('kind')!r}")
    if fields.get("bounds") is not None:
        fields["bounds"] = tuple(fields["bounds"])
    return kind(**fields)


class AdversarialTrainer(Trainer):
    """``trainer`` stepping on ``attack(model, batch, labels)`` in place of each batch."""

    def __init__(self, trainer: Trainer, model: "Model", attack: FGSM | PGD) -> None:
        self.trainer, self.model, self.attack = trainer, model, attack
        self.accumulate = getattr(trainer, "accumulate", 1)
        self.steps = 0

    def _adversarial(self, inputs: list[np.ndarray], target: np.ndarray) -> list[np.ndarray]:
        attack = self.attack
        if isinstance(attack, PGD) and attack.random_start and attack.seed is not None:
            # a fresh random start per global batch (the same seed would draw the same noise each time)
            attack = replace(attack, seed=(attack.seed * 1_000_003 + self.steps) % 2**32)
        self.steps += 1
        x, n = inputs[0], len(target)
        rank = distributed.context()
        rows = slice(0, n) if rank is None else distributed.shard(n, rank.rank, rank.world)
        if rows.stop == rows.start:   # no rows here: the sharded step weighs its stand-in row at 0
            return [x]
        if isinstance(attack, PGD):
            part = pgd(self.model, x[rows], target[rows], attack.eps, attack.alpha, attack.steps, norm=attack.norm,
                       random_start=attack.random_start, restarts=attack.restarts, seed=attack.seed,
                       bounds=attack.bounds, batch_size=attack.batch_size, within=(rows, n))
        else:
            part = fgsm(self.model, x[rows], target[rows], attack.eps, bounds=attack.bounds,
                        batch_size=attack.batch_size)
        if rank is None:
            return [part]
        # only this rank's rows are attacked: the sharded trainer steps on those alone
        adversarial = x.copy()
        adversarial[rows] = part
        return [adversarial]

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
