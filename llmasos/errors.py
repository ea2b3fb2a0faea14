"""Every exception llmasos raises on purpose, in one place.

Each message says what was wrong and what is allowed. All derive from :class:`LlmasosError`, and
the ones about bad values also derive from :class:`ValueError` so ordinary ``except ValueError``
code keeps working.

>>> from llmasos import Model
>>> try:
...     Model(input_dim=4, input_shape=(4,), framework="torch")   # no framework is loaded to say so
... except SpecError as error:
...     print(error)
give exactly one of input_dim (features), input_shape (e.g. (1, 28, 28)) or inputs (a dict of named input shapes)
"""

from __future__ import annotations


class LlmasosError(Exception):
    """Base class of every error llmasos raises deliberately."""


class SpecError(LlmasosError, ValueError):
    """A model spec is invalid: unknown layer, bad option, or shapes that do not fit."""


class UnknownLayerError(SpecError):
    """A layer name is neither built in nor registered: a typo, a custom layer whose module was
    not imported (``@llmasos.layers.register``) before the model was built or loaded, or a layer
    whose plugin package fails to import (the message names its entry point and distribution)."""


class FrameworkError(LlmasosError, ValueError):
    """An unknown framework name was asked for."""


class FrameworkNotInstalledError(LlmasosError, ImportError):
    """A known framework was asked for but is not installed; the message names the extra."""


class DeviceError(LlmasosError, ValueError):
    """A device that is unknown or not present (the message lists those that are)."""


class DataError(LlmasosError, ValueError):
    """A dataset is unusable: missing column, non-numeric or missing cells, bad labels, empty."""


class TrainingError(LlmasosError, ValueError):
    """Training was asked for with arguments that cannot work (epochs=0, bad optimizer, ...)."""


class ModelFileError(LlmasosError, ValueError):
    """A model file is missing, truncated, corrupt or not an llmasos file."""


class ConfigError(LlmasosError, ValueError):
    """A config file has a bad key or value; the message names the key and what is allowed."""


class OnnxFileError(LlmasosError, ValueError):
    """An ONNX file is missing, is not ONNX, or names an external-data file that is not there."""


class ProviderError(LlmasosError, ValueError):
    """An execution provider is unknown, not installed, or failed to initialise (strict mode)."""


class ServeError(LlmasosError, ValueError):
    """A request or deployment the server cannot serve; ``status`` is the HTTP code it answers with."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ZooError(LlmasosError, ValueError):
    """A zoo request cannot be met: unknown model name, duplicate registration, bad load option."""


class WeightsError(ZooError):
    """Pretrained weights do not fit the model: wrong shapes, missing or unexpected keys, another
    architecture's file, or a file that is not a plain state dict."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """No pretrained weights were found offline; the message lists every place looked in."""


class FamilyError(LlmasosError, ValueError):
    """A model family cannot be found or registered: an unknown name (a file saved by a family
    whose package is not installed), a name registered twice, or a plugin that fails to import."""


class AttackError(LlmasosError, ValueError):
    """An adversarial attack or robustness evaluation cannot run as asked: a negative eps, data
    outside the attack's bounds, labels the model does not know, a model with no gradient."""


class ExportError(LlmasosError, ValueError):
    """A model cannot be exported or converted: never built, a layer or op the exporter cannot
    write at the asked opset (the message names both and the framework), a missing folder."""


class SlowerError(ExportError):
    """A rewritten ONNX file ran slower than its source, so it was not written; ``ratios`` holds
    its latency over the source's per batch size."""

    def __init__(self, message: str, ratios: dict[int, float] | None = None) -> None:
        super().__init__(message)
        self.ratios = ratios or {}


class VerificationError(ExportError):
    """An ONNX file does not compute what its source model computes: different output names or
    shapes, or values further apart than the tolerance (both numbers are in the message)."""

    def __init__(self, message: str, max_abs_diff: float | None = None, atol: float | None = None) -> None:
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.atol = atol
