"""`import llmasos` stays light, and a missing framework names the extra to install."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import numpy as np
import pytest


def run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120)


def test_import_loads_no_framework():
    result = run("""
        import sys, llmasos
        from llmasos import Model, Optimizer, ModelSpec
        m = Model(input_dim=784, output_dim=10, framework="torch")
        m.add_layer("Dense", 128, activation="relu").add_layer("Dense", 10, activation="softmax")
        text = m.summary()
        assert "101,770" in text, text
        print(sorted(x for x in ("torch", "tensorflow", "keras") if x in sys.modules))
    """)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_missing_framework_names_the_extra():
    # Only the package lookup is hidden; nothing of TensorFlow is imported or faked.
    result = run("""
        import importlib.util
        real = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: None if name == "tensorflow" else real(name, *a)
        from llmasos import Model
        from llmasos.errors import FrameworkNotInstalledError
        m = Model(input_dim=4, output_dim=2, framework="tf").add_layer("Dense", 2)
        try:
            m.build()
        except FrameworkNotInstalledError as err:
            print(err)
    """)
    assert result.returncode == 0, result.stderr
    assert 'pip install "llmasos[tf]"' in result.stdout


def test_unknown_framework_lists_the_known_ones():
    from llmasos import Model
    from llmasos.errors import FrameworkError

    with pytest.raises(FrameworkError, match="unknown framework 'jax'.*pytorch.*tensorflow"):
        Model(input_dim=4, framework="jax")


def test_framework_from_environment(monkeypatch):
    from llmasos import Model

    monkeypatch.setenv("LLMASOS_FRAMEWORK", "tensorflow")
    assert Model(input_dim=4).framework == "tf"
    monkeypatch.setenv("LLMASOS_FRAMEWORK", "PyTorch")
    assert Model(input_dim=4).framework == "torch"


def test_each_framework_builds_or_names_its_extra():
    """In the full env both build; in tox's env without frameworks each names its extra."""
    from llmasos import Model
    from llmasos.errors import FrameworkNotInstalledError

    for framework, package in (("torch", "torch"), ("tf", "tensorflow")):
        model = Model(input_dim=4, output_dim=2, framework=framework).add_layer("Dense", 2)
        if importlib.util.find_spec(package) is None:
            with pytest.raises(FrameworkNotInstalledError, match=rf'pip install "llmasos\[{framework}\]"'):
                model.build()
        else:
            assert model.build().predict(np.ones((1, 4), np.float32)).shape == (1, 2)


@pytest.mark.torch
@pytest.mark.tf
@pytest.mark.parametrize("first", ["tensorflow", "torch"])
def test_both_frameworks_share_a_process_whichever_loads_first(first):
    """triton (torch) loaded after TensorFlow segfaults; llmasos must order them or block triton."""
    result = run(f"""
        import warnings
        warnings.simplefilter("ignore")
        import {first}
        import numpy as np
        from llmasos import Dataset, Model, Optimizer
        x, y = np.random.default_rng(0).random((16, 4), dtype=np.float32), np.arange(16) % 2
        for framework in ("tf", "torch") if "{first}" == "tensorflow" else ("torch", "tf"):
            m = Model(input_dim=4, output_dim=2, framework=framework).add_layer("Dense", 2, activation="softmax")
            m.train(Dataset(x, y), Optimizer("Adam", lr=0.01), epochs=1, progress=False)
        print("trained both")
    """)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained both" in result.stdout
