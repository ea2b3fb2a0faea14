"""The space an attack works in. A model whose inputs are normalised pixels (a zoo image model:
``model.metadata["preprocess"]`` holds the per-channel ``mean`` and ``std``) is attacked in pixel
space: inputs are mapped back to pixels in [0, 1], ``eps`` and step sizes are in pixel units, and
the examples go back to the model's normalised inputs. This is what torchattacks
(``attack.set_normalization_used(mean, std)``) and ART (``preprocessing=(mean, std)``,
``clip_values=(0, 1)``) do, so the same ``eps`` means the same attack there and here; seen from the
model's inputs, the bounds are ``((0 - mean) / std, (1 - mean) / std)`` per channel and an
L-infinity eps is ``eps / std`` per channel.

An explicit ``bounds=`` wins: the attack then works in the model's own input space, within those
bounds, with ``eps`` in its units.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..errors import AttackError


class PixelSpace:
    """Normalised inputs ``(pixels - mean) / std``, per channel (axis 1, images NCHW)."""

    def __init__(self, mean: Any, std: Any, ndim: int) -> None:
        mean, std = np.asarray(mean, dtype=np.float32), np.asarray(std, dtype=np.float32)
        if mean.ndim != 1 or mean.shape != std.shape or not np.all(std > 0):
            raise AttackError(f"the model's metadata['preprocess'] must give one mean and one std > 0 per channel, "
                              f"got mean={mean.tolist()}, std={std.tolist()}")
        shape = (1, len(mean)) + (1,) * (ndim - 2)
        self.mean, self.std = mean.reshape(shape), std.reshape(shape)

    @classmethod
    def of(cls, model: Any, x: np.ndarray) -> "PixelSpace | None":
        """The model's pixel space when its metadata carries ``preprocess`` mean/std, else None."""
        settings = (getattr(model, "metadata", None) or {}).get("preprocess") or {}
        if "mean" not in settings or "std" not in settings:
            return None
        if x.ndim < 2 or x.shape[1] != len(settings["mean"]):
            raise AttackError(f"the model's metadata['preprocess'] normalises {len(settings['mean'])} channels, but the "
                              f"inputs have shape {x.shape} (channels on axis 1, NCHW); pass bounds= to attack them "
                              f"in the model's input space")
        return cls(settings["mean"], settings["std"], x.ndim)

    def to_pixels(self, inputs: np.ndarray) -> np.ndarray:
        pixels = (inputs * self.std + self.mean).astype(np.float32)
        if pixels.size and pixels.min() > -1e-5 and pixels.max() < 1 + 1e-5:
            # float rounding puts a pixel of 0 or 1 a hair outside [0, 1]; the bounds check would refuse it
            np.clip(pixels, 0.0, 1.0, out=pixels)
        return pixels

    def to_inputs(self, pixels: np.ndarray) -> np.ndarray:
        return ((pixels - self.mean) / self.std).astype(np.float32)

    def gradient(self, input_gradient: np.ndarray) -> np.ndarray:
        """d loss / d pixels from d loss / d inputs (the chain rule through the normalisation)."""
        return (input_gradient / self.std).astype(np.float32)


def attack_space(model: Any, bounds: Any, x: np.ndarray) -> tuple[PixelSpace | None, Any]:
    """``(pixel space or None, bounds)`` for an attack given ``bounds`` (None: the default): the
    model's pixel space with bounds (0, 1) when it carries its preprocessing and no bounds were
    given, else the model's input space with ``bounds`` (default (0, 1))."""
    if bounds is not None:
        return None, bounds
    return PixelSpace.of(model, x), (0.0, 1.0)
