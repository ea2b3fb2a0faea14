"""Every exception llmasos raises on purpose, in one place.

Each message says what was wrong and what is allowed. All derive from :class:`LlmasosError`, and
the ones about bad values also derive from :class:`ValueError` so ordinary ``except ValueError``
code keeps working.
"""

from __future__ import annotations


class LlmasosError(Exception):
    """Base class of every error llmasos raises deliberately."""


class SpecError(LlmasosError, ValueError):
    """A model spec is invalid: unknown layer, bad option, or shapes that do not fit."""


class FrameworkError(LlmasosError, ValueError):
    """An unknown framework name was asked for."""


class FrameworkNotInstalledError(LlmasosError, ImportError):
    """A known framework was asked for but is not installed; the message names the extra."""


class DataError(LlmasosError, ValueError):
    """A dataset is unusable: missing column, non-numeric or missing cells, bad labels, empty."""


class TrainingError(LlmasosError, ValueError):
    """Training was asked for with arguments that cannot work (epochs=0, bad optimizer, ...)."""


class ModelFileError(LlmasosError, ValueError):
    """A model file is missing, truncated, corrupt or not an llmasos file."""


class ConfigError(LlmasosError, ValueError):
    """A config file has a bad key or value; the message names the key and what is allowed."""
