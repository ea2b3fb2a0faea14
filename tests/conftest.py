"""Shared fixtures: small real data (scikit-learn's bundled digits) and framework lists."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

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


@pytest.fixture(scope="session")
def demo_plugin(tmp_path_factory) -> Path:
    """The folder the demo plugin package (tests/plugins/llmasos_demo_plugin) is installed into by
    pip (a wheel built by setuptools); put it on a fresh interpreter's path with :func:`run_python`."""
    root = tmp_path_factory.mktemp("plugin")
    source = shutil.copytree(Path(__file__).parent / "plugins" / "llmasos_demo_plugin", root / "source")
    target = root / "site"   # the build writes beside its sources, hence the copy
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--no-index", "--target", str(target), str(source)], check=True, timeout=300)
    return target


def run_python(code: str, path: Path | None = None) -> subprocess.CompletedProcess:
    """``code`` in a fresh interpreter (nothing imported yet), with ``path`` on its sys.path."""
    env = dict(os.environ)
    if path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          timeout=300, env=env)


class ModelsByFramework(dict):
    """``{framework: model}`` that compiles each framework's model on first use, so a shared
    fixture works where only one framework is installed (``tox -e torch``, ``tox -e tf``)."""

    def __init__(self, load):
        super().__init__()
        self._load = load

    def __missing__(self, framework: str):
        self[framework] = model = self._load(framework)
        return model
