"""One optimizer definition that every adapter maps with the same meaning.

The update rules are PyTorch's, written out here so each adapter can be checked against them:

* ``SGD``: ``g += weight_decay * p``; with momentum ``b = momentum * b + g`` (``b = g`` on the first
  step) and ``g = b`` (or ``g + momentum * b`` with ``nesterov``); ``p -= lr * g``.
* ``Adam``: ``g += weight_decay * p`` (L2); ``m, v`` exponential averages with ``betas``;
  ``p -= lr * m̂ / (sqrt(v̂) + eps)`` with bias-corrected ``m̂, v̂``. ``eps`` is explicit (1e-8),
  never a framework default.
* ``AdamW``: decoupled decay ``p *= 1 - lr * weight_decay`` then Adam without L2.
* ``RMSprop``: ``g += weight_decay * p``; ``v = alpha * v + (1 - alpha) * g²``;
  ``p -= lr * g / (sqrt(v) + eps)`` (with ``momentum``: ``b = momentum * b + g / (sqrt(v) + eps)``,
  ``p -= lr * b``).

Learning-rate schedules step once per batch and are computed here, in plain Python, then handed
to the adapter for every step, so both frameworks see exactly the same rate.

>>> opt = Optimizer("SGD", lr=0.1, schedule="step", step_size=10, gamma=0.5)
>>> opt.lr_at(0, total_steps=100), opt.lr_at(25, total_steps=100)
(0.1, 0.025)
"""

from __future__ import annotations

import math
from typing import Any

from .errors import TrainingError

_DEFAULTS: dict[str, dict[str, Any]] = {
    "sgd": {"momentum": 0.0, "nesterov": False, "weight_decay": 0.0},
    "adam": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.0},
    "adamw": {"betas": (0.9, 0.999), "eps": 1e-8, "weight_decay": 0.01},
    "rmsprop": {"alpha": 0.99, "eps": 1e-8, "momentum": 0.0, "weight_decay": 0.0},
}
_NAMES = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
SCHEDULES = ("constant", "step", "cosine")

# Per-parameter state each optimizer keeps, by neutral slot name (same shape as the parameter).
SLOTS = {"sgd": ("momentum",), "adam": ("m", "v"), "adamw": ("m", "v"), "rmsprop": ("v", "momentum")}


class Optimizer:
    """An optimizer and its learning-rate schedule, as plain data.

    >>> Optimizer("Adam", lr=1e-3).get_config()["eps"]
    1e-08
    """

    def __init__(self, name: str = "Adam", lr: float = 0.001, *, schedule: str = "constant",
                 warmup_steps: int = 0, step_size: int | None = None, gamma: float = 0.1,
                 min_lr: float = 0.0, total_steps: int | None = None, **options: Any) -> None:
        key = str(name).lower()
        if key not in _DEFAULTS:
            raise TrainingError(f"unknown optimizer {name!r}; known: {', '.join(_NAMES.values())}")
        if not isinstance(lr, (int, float)) or isinstance(lr, bool) or not math.isfinite(lr) or lr <= 0:
            raise TrainingError(f"learning rate must be a positive number, got lr={lr!r}")
        unknown = sorted(set(options) - set(_DEFAULTS[key]))
        if unknown:
            raise TrainingError(f"{_NAMES[key]} takes no option(s) {', '.join(unknown)}; "
                                f"it takes: {', '.join(sorted(_DEFAULTS[key]))}")
        self.name = _NAMES[key]
        self.kind = key
        self.lr = float(lr)
        self.options = {**_DEFAULTS[key], **options}
        self._check_options()
        if schedule not in SCHEDULES:
            raise TrainingError(f"unknown schedule {schedule!r}; known: {', '.join(SCHEDULES)}")
        if schedule == "step" and (not isinstance(step_size, int) or step_size <= 0):
            raise TrainingError(f"schedule 'step' needs a positive step_size (in batches), got {step_size!r}")
        if not isinstance(warmup_steps, int) or warmup_steps < 0:
            raise TrainingError(f"warmup_steps must be a non-negative int, got {warmup_steps!r}")
        self.schedule = schedule
        self.warmup_steps = warmup_steps
        self.step_size = step_size
        self.gamma = float(gamma)
        self.min_lr = float(min_lr)
        self.total_steps = total_steps

    def _check_options(self) -> None:
        opts = self.options
        if "betas" in opts:
            betas = tuple(float(b) for b in opts["betas"])
            if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
                raise TrainingError(f"betas must be two numbers in [0, 1), got {opts['betas']!r}")
            opts["betas"] = betas
        for key in ("eps",):
            if key in opts and not float(opts[key]) > 0:
                raise TrainingError(f"{key} must be positive, got {opts[key]!r}")
        for key in ("momentum", "weight_decay"):
            if key in opts and float(opts[key]) < 0:
                raise TrainingError(f"{key} must be non-negative, got {opts[key]!r}")
        if "alpha" in opts and not 0.0 <= float(opts["alpha"]) < 1.0:
            raise TrainingError(f"alpha must be in [0, 1), got {opts['alpha']!r}")
        if opts.get("nesterov") and not opts.get("momentum"):
            raise TrainingError("nesterov=True needs a momentum above 0")

    @property
    def slots(self) -> tuple[str, ...]:
        return SLOTS[self.kind]

    def lr_at(self, step: int, total_steps: int | None = None) -> float:
        """The learning rate for batch number ``step`` (counted from 0 over the whole run)."""
        total = self.total_steps or total_steps
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.schedule == "step":
            return self.lr * self.gamma ** ((step - self.warmup_steps) // self.step_size)
        if self.schedule == "cosine":
            if not total:
                raise TrainingError("schedule 'cosine' needs total_steps (train() passes it)")
            span = max(total - self.warmup_steps, 1)
            progress = min(max(step - self.warmup_steps, 0) / span, 1.0)
            return self.min_lr + (self.lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return self.lr

    def get_config(self) -> dict:
        config = {"name": self.name, "lr": self.lr, "schedule": self.schedule, "warmup_steps": self.warmup_steps,
                  "step_size": self.step_size, "gamma": self.gamma, "min_lr": self.min_lr,
                  "total_steps": self.total_steps, **self.options}
        if "betas" in config:
            config["betas"] = list(config["betas"])
        return config

    @classmethod
    def from_config(cls, config: dict) -> "Optimizer":
        return cls(**config)

    def __repr__(self) -> str:
        extra = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Optimizer({self.name!r}, lr={self.lr}, {extra}, schedule={self.schedule!r})"
