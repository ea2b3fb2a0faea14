"""Square attack (Andriushchenko et al., 2020), L-infinity and query-only: it needs the model's
outputs, never a gradient, so it runs against an ONNX file or any function from inputs to scores,
for teams that hold only the artifact. Random square patches of +-eps are tried one at a time and
kept when they lower the margin ``score(label) - max score(other)``; an example is left alone once
fooled.

>>> x_adv = square(model, x, y, eps=0.1, queries=300)              # an llmasos Model   # doctest: +SKIP
>>> x_adv = square("model.onnx", x, y, eps=0.1, queries=300)       # ONNX Runtime       # doctest: +SKIP
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any, Callable

import numpy as np

from ..errors import AttackError
from .checks import check_bounds, check_eps, check_labels
from .space import attack_space

Bounds = tuple[float, float]
# the share of pixels a square covers halves at these fractions of the query budget (the paper's
# schedule for 10,000 queries, scaled to the budget)
_HALVINGS = (0.001, 0.005, 0.02, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8)


def scorer(target: Any) -> Callable[[np.ndarray], np.ndarray]:
    """A function from a batch of inputs to their scores: an llmasos Model's ``predict``, an ONNX
    file run by ONNX Runtime on the CPU (its first input and output), or a callable as it is."""
    if hasattr(target, "predict") and hasattr(target, "spec"):
        return lambda x: target.predict(x, batch_size=1024)
    if isinstance(target, (str, os.PathLike)) and os.fspath(target).endswith(".onnx"):
        if not os.path.exists(target):
            raise AttackError(f"{os.fspath(target)}: no such ONNX file")
        import onnxruntime

        session = onnxruntime.InferenceSession(os.fspath(target), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return lambda x: session.run(None, {name: np.ascontiguousarray(x, dtype=np.float32)})[0]
    if callable(target):
        return target
    raise AttackError(f"square attacks an llmasos Model, an .onnx path or a function from inputs to scores, "
                      f"got {type(target).__name__}")


def _margins(scores: np.ndarray, labels: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.min() >= 0 and np.allclose(scores.sum(axis=1), 1, atol=1e-3):
        scores = np.log(np.maximum(scores, 1e-30))   # probabilities: compare logits, not saturated values
    rows = np.arange(len(labels))
    own = scores[rows, labels]
    scores[rows, labels] = -np.inf
    return own - scores.max(axis=1)


def square(target: Any, x: Any, y: Any, eps: float, queries: int = 300, *, seed: int | None = 0,
           p_init: float = 0.1, bounds: Bounds | None = None) -> np.ndarray:
    """Square attack's adversarial examples within ``eps`` (L-infinity) of ``x`` after at most
    ``queries`` queries per example, NumPy in and out. Images are ``(n, channels, height, width)``;
    other inputs are attacked as one row of pixels. ``p_init`` is the share of pixels the first
    squares cover. ``bounds`` default to (0, 1), or, for an llmasos Model whose metadata carries
    its ``preprocess`` mean/std, to pixels in [0, 1] with eps in pixel units
    (:mod:`llmasos.robust.space`)."""
    eps = check_eps(eps)
    if isinstance(queries, bool) or not isinstance(queries, int) or queries < 1:
        raise AttackError(f"queries must be an int >= 1 (model calls per example), got {queries!r}")
    if not 0 < p_init <= 1:
        raise AttackError(f"p_init must be in (0, 1] (the share of pixels a first square covers), got {p_init!r}")
    x = np.asarray(x, dtype=np.float32)
    model_score = scorer(target)
    pixels, bounds = attack_space(target, bounds, x)
    if pixels is not None:   # the attack moves pixels; the model sees them normalised
        x = pixels.to_pixels(x)

    def score(points: np.ndarray) -> np.ndarray:
        return model_score(points if pixels is None else pixels.to_inputs(points))

    shape = x.shape
    images = x if x.ndim == 4 else x.reshape(len(x), 1, 1, -1)
    low, high = check_bounds(bounds, images)
    outputs = score(x[:1]) if len(x) else np.zeros((0, 2))
    labels = check_labels(y, len(x), np.asarray(outputs).shape[-1])
    rng = np.random.default_rng(seed)
    n, channels, height, width = images.shape

    def clipped(candidate: np.ndarray, clean: np.ndarray) -> np.ndarray:
        return np.clip(np.clip(candidate, clean - eps, clean + eps), low, high)

    # vertical stripes of +-eps: the paper's start, already a strong perturbation
    adv = clipped(images + eps * rng.choice([-1.0, 1.0], size=(n, channels, 1, width)).astype(np.float32), images)
    margin = _margins(score(adv.reshape(shape)), labels)
    for query in range(1, queries):
        active = np.flatnonzero(margin > 0)
        if not len(active):
            break
        p = p_init / 2 ** sum(query > f * queries for f in _HALVINGS)
        side = int(min(max(round(np.sqrt(p * height * width)), 1), height, width))
        candidate = adv[active].copy()
        for row, example in enumerate(active):
            top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
            window = (slice(top, top + side), slice(left, left + side))
            signs = rng.choice([-1.0, 1.0], size=(channels, 1, 1)).astype(np.float32)
            candidate[row][(slice(None), *window)] = images[example][(slice(None), *window)] + eps * signs
        candidate = clipped(candidate, images[active])
        new_margin = _margins(score(candidate.reshape((len(active), *shape[1:]))), labels[active])
        better = new_margin < margin[active]
        adv[active[better]] = candidate[better]
        margin[active[better]] = new_margin[better]
    return adv.reshape(shape) if pixels is None else pixels.to_inputs(adv.reshape(shape))


@dataclass(frozen=True)
class Square:
    """:func:`square` as an object, for :func:`llmasos.robust.evaluate` (also on an ONNX file)."""

    eps: float = 0.1
    queries: int = 300
    seed: int | None = 0
    p_init: float = 0.1
    bounds: Bounds | None = None
    name = "square"
    norm = "inf"
    needs_gradient = False

    def __call__(self, target: Any, x: Any, y: Any) -> np.ndarray:
        return square(target, x, y, self.eps, self.queries, seed=self.seed, p_init=self.p_init, bounds=self.bounds)

    def with_eps(self, eps: float) -> "Square":
        return replace(self, eps=eps)
