"""Attacks by name, for ``robust.evaluate(attacks=["fgsm", "pgd"])``, ``train(adversarial="pgd")``
and ``llmasos robust --attacks``.

>>> make_attack("pgd").name, make_attack(FGSM(eps=0.2)).eps
('pgd', 0.2)
"""

from __future__ import annotations

from typing import Any

from ..errors import AttackError
from .attacks import FGSM, PGD
from .deepfool import DeepFool
from .square import Square


def make_attack(attack: Any) -> Any:
    """An attack object from a name ("fgsm", "pgd", "deepfool", "square") or the object itself."""
    known = {"fgsm": FGSM, "pgd": PGD, "deepfool": DeepFool, "square": Square}
    if isinstance(attack, tuple(known.values())):
        return attack
    if isinstance(attack, str) and attack.lower() in known:
        return known[attack.lower()]()
    raise AttackError(f"unknown attack {attack!r}; known: {', '.join(known)}, or an attack object "
                      f"(FGSM(...), PGD(...), DeepFool(...), Square(...))")
