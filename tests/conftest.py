"""Shared fixtures: small real data (scikit-learn's bundled digits) and framework lists."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

FRAMEWORKS = [name for name, package in (("torch", "torch"), ("tf", "tensorflow"))
              if importlib.util.find_spec(package) is not None]


def framework_params():
    """Parametrize over installed frameworks, each carrying its marker."""
    return [pytest.param(name, marks=getattr(pytest.mark, name)) for name in FRAMEWORKS]


@pytest.fixture(scope="session")
def digits():
    """Digits as (x_train, y_train, x_test, y_test): 8x8 images scaled to [0, 1], 80/20 split."""
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32)
    y = data.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    cut = int(0.8 * len(x))
    return x[:cut], y[:cut], x[cut:], y[cut:]


class ModelsByFramework(dict):
    """``{framework: model}`` that compiles each framework's model on first use, so a shared
    fixture works where only one framework is installed (``tox -e torch``, ``tox -e tf``)."""

    def __init__(self, load):
        super().__init__()
        self._load = load

    def __missing__(self, framework: str):
        self[framework] = model = self._load(framework)
        return model
