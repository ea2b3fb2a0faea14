"""Gradient attacks, written once in NumPy on the gradient each adapter gives
(:meth:`~llmasos.adapters.base.CompiledModel.input_gradient`): FGSM and PGD (L-infinity and L2,
random start, restarts); the minimum-norm DeepFool is in :mod:`llmasos.robust.deepfool`.

Each attack works on the logits (the loss is cross-entropy on logits, never on softmax outputs),
with the model in inference mode (its mode restored after), and keeps every example within
``eps`` of its clean input and within ``bounds``: a step is clipped to the eps ball first, then to
the bounds, as torchattacks does, whose ``FGSM``/``PGD`` give the same arrays bit for bit.
``bounds`` default to (0, 1); a model that carries its preprocessing (a zoo image model) is
attacked in pixel space, eps in pixel units (:mod:`llmasos.robust.space`).

>>> x_adv = fgsm(model, x, y, eps=0.1)                                          # doctest: +SKIP
>>> x_adv = pgd(model, x, y, eps=0.1, alpha=0.01, steps=40, norm="l2")            # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import AttackError
from .checks import check_bounds, check_eps, check_labels, check_model, check_norm
from .space import attack_space

if TYPE_CHECKING:
    from ..model import Model

Bounds = tuple[float, float]


class _Batch:
    """One attack's view of the data: inputs in the model's layout (float32) — as pixels in [0, 1]
    for a model that carries its preprocessing, unless ``bounds`` are given — labels checked, the
    loss and target the gradient takes."""

    def __init__(self, model: Any, x: Any, y: Any, bounds: Any, batch_size: int) -> None:
        self.model = check_model(model)
        x = np.asarray(x, dtype=np.float32)
        self.shape = x.shape
        inputs = self.model.shape_input(x)[0]
        self.pixels, bounds = attack_space(self.model, bounds, inputs)
        self.x = inputs if self.pixels is None else self.pixels.to_pixels(inputs)
        self.low, self.high = check_bounds(bounds, self.x)
        self.labels = check_labels(y, len(self.x), self.model.classes)
        self.binary = self.model.spec.final_activation() == "sigmoid"
        self.loss = "binary_cross_entropy" if self.binary else "cross_entropy"
        self.target = self.labels.astype(np.float32).reshape(-1, 1) if self.binary else self.labels
        if not isinstance(batch_size, int) or batch_size < 1:
            raise AttackError(f"batch_size must be a positive int, got {batch_size!r}")
        self.batch_size = batch_size

    def gradient(self, x: np.ndarray, target: np.ndarray | None = None, per_example: bool = False) -> np.ndarray:
        """d(mean loss over each batch of ``batch_size``)/dx, against ``target`` (default: the
        labels); ``per_example`` gives each example's own loss gradient (a batch's mean times its
        size: in inference mode examples do not interact)."""
        compiled, step = self.model.compiled, self.batch_size
        target = self.target if target is None else target
        parts = []
        for s in range(0, len(x), step):
            grad = compiled.input_gradient([self.inputs(x[s:s + step])], target[s:s + step], self.loss)[0]
            grad = grad if self.pixels is None else self.pixels.gradient(grad)
            parts.append(grad * np.float32(len(grad)) if per_example else grad)
        return np.concatenate(parts) if parts else np.zeros_like(x)

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """The model's inputs for points of the attack's space."""
        return x if self.pixels is None else self.pixels.to_inputs(x)

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(self.inputs(x))

    def predicted(self, x: np.ndarray) -> np.ndarray:
        return predicted_labels(self.model, self.inputs(x))

    def fooled(self, x: np.ndarray) -> np.ndarray:
        return self.predicted(x) != self.labels

    def clip(self, x: np.ndarray) -> np.ndarray:
        return np.clip(x, self.low, self.high)

    def out(self, x: np.ndarray) -> np.ndarray:
        return self.inputs(x).reshape(self.shape)


def predicted_labels(model: "Model", x: np.ndarray, batch_size: int = 1024) -> np.ndarray:
    """Class ids the model predicts (a single sigmoid output: 1 above 0.5)."""
    out = model.predict(x, batch_size=batch_size)
    return (out[:, 0] > 0.5).astype(np.int64) if out.shape[-1] == 1 else out.argmax(axis=-1)


def fgsm(model: "Model", x: Any, y: Any, eps: float, *, bounds: Bounds | None = None,
         batch_size: int = 256) -> np.ndarray:
    """Fast gradient sign method (Goodfellow et al., 2015): ``clip(x + eps * sign(grad))``.
    NumPy in (``x`` as ``predict`` takes it, ``y`` class ids), NumPy out, in ``x``'s shape.
    ``bounds`` default to (0, 1), or to pixels in [0, 1] with eps in pixel units for a model whose
    metadata carries its ``preprocess`` mean/std (:mod:`llmasos.robust.space`)."""
    eps = check_eps(eps)
    batch = _Batch(model, x, y, bounds, batch_size)
    return batch.out(batch.clip(batch.x + eps * np.sign(batch.gradient(batch.x))))


def pgd(model: "Model", x: Any, y: Any, eps: float, alpha: float | None = None, steps: int = 10, *,
        norm: str = "inf", random_start: bool = True, restarts: int = 1, seed: int | None = 0,
        bounds: Bounds | None = None, batch_size: int = 256, within: tuple[slice, int] | None = None) -> np.ndarray:
    """Projected gradient descent (Madry et al., 2018): ``steps`` steps of size ``alpha`` (default
    ``2.5 * eps / steps``) along the gradient's sign (``norm="inf"``) or its L2 direction
    (``"l2"``), each projected onto the eps ball around ``x`` and then into ``bounds``. With
    ``random_start`` each run starts from a random point of the ball (drawn from ``seed``); with
    ``restarts=n`` the attack runs n times and keeps, per example, the first run that fools the
    model (else the last). ``bounds`` as in :func:`fgsm`. ``within=(rows, n)`` says ``x`` is the
    rows ``rows`` of a batch of ``n``: the random start is drawn for the whole batch and those
    rows taken, so a data-parallel rank attacking its slice gets the examples one process would."""
    eps = check_eps(eps)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise AttackError(f"steps must be an int >= 0, got {steps!r}")
    alpha = 2.5 * eps / max(steps, 1) if alpha is None else check_eps(alpha, "alpha")
    norm = check_norm(norm)
    if isinstance(restarts, bool) or not isinstance(restarts, int) or restarts < 1:
        raise AttackError(f"restarts must be an int >= 1, got {restarts!r}")
    if restarts > 1 and not random_start:
        raise AttackError("restarts > 1 would repeat the same attack: without random_start=True every run "
                          "starts from x; pass random_start=True or restarts=1")
    batch = _Batch(model, x, y, bounds, batch_size)
    rows, total = within if within is not None else (slice(0, len(batch.x)), len(batch.x))
    if len(range(total)[rows]) != len(batch.x):
        raise AttackError(f"within=(rows, n) must name x's rows of a batch of n: {rows} of {total} is "
                          f"{len(range(total)[rows])} rows, x has {len(batch.x)}")
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        start = _random_start(rng, (total, *batch.x.shape[1:]), norm, eps)[rows] if random_start else None
        adv = _pgd_run(batch, eps, alpha, steps, norm, start)
        if best is None:
            best = adv
        else:  # keep the earlier run where it fooled the model already
            take = ~batch.fooled(best)
            best[take] = adv[take]
        if restarts > 1 and batch.fooled(best).all():
            break
    return batch.out(best)


def _random_start(rng: np.random.Generator, shape: tuple[int, ...], norm: str, eps: float) -> np.ndarray:
    """A random point of the eps ball around 0 per example, for a batch of ``shape``."""
    if norm == "inf":
        return rng.uniform(-eps, eps, size=shape).astype(np.float32)
    # a random direction, at a radius drawn uniformly in [0, eps] (torchattacks' PGDL2)
    delta = rng.standard_normal(shape).astype(np.float32)
    radius = rng.uniform(0.0, 1.0, size=(shape[0],)).astype(np.float32)
    return delta * _per_example(radius / np.maximum(_l2(delta), 1e-12) * eps, delta)


def _pgd_run(batch: _Batch, eps: float, alpha: float, steps: int, norm: str, start: np.ndarray | None) -> np.ndarray:
    x = batch.x
    adv = x.copy() if start is None else batch.clip(x + start)
    for _ in range(steps):
        grad = batch.gradient(adv)
        if norm == "inf":
            adv = adv + alpha * np.sign(grad)
            delta = np.clip(adv - x, -eps, eps)
        else:
            adv = adv + alpha * (grad / _per_example(_l2(grad) + 1e-10, x))
            delta = adv - x
            norms = _l2(delta)
            # back onto the sphere where outside the ball (a zero delta, or eps 0, stays as it is)
            factor = np.where(norms > eps, eps / np.maximum(norms, np.float32(1e-12)), 1.0).astype(np.float32)
            delta = delta * _per_example(factor, x)
        adv = batch.clip(x + delta)
    return adv


def _l2(values: np.ndarray) -> np.ndarray:
    return np.linalg.norm(values.reshape(len(values), -1), axis=1).astype(np.float32)


def _per_example(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    return values.reshape((len(like),) + (1,) * (like.ndim - 1))


@dataclass(frozen=True)
class FGSM:
    """:func:`fgsm` as an object, for :func:`llmasos.robust.evaluate` (and ``train(adversarial=)``)."""

    eps: float = 0.1
    bounds: Bounds | None = None
    batch_size: int = 256
    name = "fgsm"
    norm = "inf"

    def __call__(self, model: "Model", x: Any, y: Any) -> np.ndarray:
        return fgsm(model, x, y, self.eps, bounds=self.bounds, batch_size=self.batch_size)

    def with_eps(self, eps: float) -> "FGSM":
        return replace(self, eps=eps)


@dataclass(frozen=True)
class PGD:
    """:func:`pgd` as an object: ``PGD(eps=0.1, alpha=0.01, steps=40)``."""

    eps: float = 0.1
    alpha: float | None = None
    steps: int = 10
    norm: str = "inf"
    random_start: bool = True
    restarts: int = 1
    seed: int | None = 0
    bounds: Bounds | None = None
    batch_size: int = 256
    name = "pgd"

    def __call__(self, model: "Model", x: Any, y: Any) -> np.ndarray:
        return pgd(model, x, y, self.eps, self.alpha, self.steps, norm=self.norm, random_start=self.random_start,
                   restarts=self.restarts, seed=self.seed, bounds=self.bounds, batch_size=self.batch_size)

    def with_eps(self, eps: float) -> "PGD":
        return replace(self, eps=eps)
