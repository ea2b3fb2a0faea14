"""DeepFool (Moosavi-Dezfooli et al., 2016), a minimum-norm L2 attack: each step linearises the
classifier around the current point and moves, by ``1 + overshoot`` times, to the nearest
linearised decision boundary; it stops for an example once its prediction changes. Unlike
torchattacks' ``DeepFool`` the linearisation leaves out the directions the bounds block (a pixel
at 0 pushed below it): otherwise each step is clipped short of the boundary and, on images with
many pixels at a bound (28% of the digits test images here), never crosses it.

It needs, per example, the gradient of every logit difference ``z_k - z_label``. Those come from
the one gradient the adapters give: the cross-entropy gradient for label ``k`` is
``-grad z_k + sum_j p_j grad z_j``, so ``grad CE(label) - grad CE(k) = grad z_k - grad z_label``,
and ``log p_k - log p_label = z_k - z_label`` from the softmax outputs. Nothing framework-specific
is written here.

>>> x_adv = deepfool(model, x, y, steps=50)                     # doctest: +SKIP
>>> x_adv = deepfool(model, x, y, eps=0.5)    # within L2 0.5, else the clean input   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AttackError
from .attacks import Bounds, _Batch, _l2, _per_example
from .checks import check_eps

if TYPE_CHECKING:
    from ..model import Model

# softmax outputs below this count as this (log 1e-30 = -69): a class that unlikely is far away
_SMALLEST_PROBABILITY = np.float32(1e-30)


def deepfool(model: "Model", x: Any, y: Any, steps: int = 50, overshoot: float = 0.02, *, eps: float | None = None,
             bounds: Bounds | None = None, batch_size: int = 256) -> np.ndarray:
    """DeepFool's adversarial examples, NumPy in and out in ``x``'s shape, for a softmax
    classifier. ``steps`` bounds the iterations; with ``eps`` an example whose perturbation's L2
    norm exceeds it is returned clean (the attack failed within that budget), which makes
    accuracy under DeepFool at ``eps`` comparable with PGD-L2's. Examples already misclassified
    are returned as they are."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise AttackError(f"steps must be an int >= 1, got {steps!r}")
    overshoot = check_eps(overshoot, "overshoot")
    eps = None if eps is None else check_eps(eps)
    batch = _Batch(model, x, y, bounds, batch_size)
    if model.spec.final_activation() != "softmax" or (model.classes or 0) < 2:
        raise AttackError(f"deepfool takes a softmax classifier (its logit differences come from the softmax "
                          f"outputs); this model ends in {model.spec.final_activation()!r}; use pgd(norm='l2')")
    classes = model.classes
    adv = batch.x.copy()
    active = np.flatnonzero(batch.predicted(adv) == batch.labels)
    for _ in range(steps):
        if not len(active):
            break
        point, labels = adv[active], batch.labels[active]
        log_p = np.log(np.maximum(batch.predict(point), _SMALLEST_PROBABILITY))
        still = log_p.argmax(axis=1) == labels
        active, point, labels, log_p = active[still], point[still], labels[still], log_p[still]
        if not len(active):
            break
        rows = np.arange(len(active))
        # grad CE(k) for every class k, per example: (classes, n, *shape)
        grads = np.stack([batch.gradient(point, np.full(len(point), k, dtype=np.int64), per_example=True)
                          for k in range(classes)])
        w = grads[labels, rows][None] - grads                     # grad (z_k - z_label)
        # only directions the bounds allow: a pixel at a bound cannot move past it, and a step
        # that counted on it would be clipped short of the boundary every time (never crossing)
        w = np.where(((point <= batch.low) & (w < 0)) | ((point >= batch.high) & (w > 0)), np.float32(0), w)
        f = log_p - log_p[rows, labels][:, None]                  # z_k - z_label, < 0 off the label
        w_norms = np.linalg.norm(w.reshape(classes, len(point), -1), axis=2).T   # (n, classes)
        with np.errstate(divide="ignore", invalid="ignore"):
            distance = np.abs(f) / w_norms
        distance[rows, labels] = np.inf
        distance[~np.isfinite(distance)] = np.inf
        nearest = distance.argmin(axis=1)
        scale = np.abs(f[rows, nearest]) / np.maximum(w_norms[rows, nearest] ** 2, np.float32(1e-20))
        step = _per_example(scale.astype(np.float32), point) * w[nearest, rows]
        adv[active] = batch.clip(point + (1.0 + overshoot) * step)
    if eps is not None:
        too_far = _l2(adv - batch.x) > eps
        adv[too_far] = batch.x[too_far]
    return batch.out(adv)


@dataclass(frozen=True)
class DeepFool:
    """:func:`deepfool` as an object, for :func:`llmasos.robust.evaluate`: at each eps of the
    report, an example counts as fooled only when DeepFool needed an L2 norm of at most eps."""

    steps: int = 50
    overshoot: float = 0.02
    eps: float | None = None
    bounds: Bounds | None = None
    batch_size: int = 256
    name = "deepfool"
    norm = "l2"

    def __call__(self, model: "Model", x: Any, y: Any) -> np.ndarray:
        return deepfool(model, x, y, self.steps, self.overshoot, eps=self.eps, bounds=self.bounds,
                        batch_size=self.batch_size)

    def with_eps(self, eps: float) -> "DeepFool":
        return replace(self, eps=eps)
