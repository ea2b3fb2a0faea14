"""Export fixtures: the parity suite's models (one per layer kind) exported once per session, and
a digits classifier trained with llmasos."""

from __future__ import annotations

import pytest

from llmasos import Dataset, Model, Optimizer, export

from ..conftest import FRAMEWORKS
from ..test_parity import SPECS, randomized_weights

# Known failures outside llmasos, each with its cause; the tests xfail on them strictly, so a fix
# shows up as an unexpected pass.
REFERENCE_BUGS = {
    ("gru", "tf"): "onnx.reference's Loop joins scan outputs with np.vstack (concatenating, (T*B, U)) instead "
                   "of stacking them ((T, B, U)); ONNX Runtime, which follows the standard, agrees with TensorFlow",
}


def case_params(bugs: dict[tuple[str, str], str] | None = None) -> list:
    """(case, framework) pairs with the framework's marker, and a strict xfail for ``bugs``."""
    params = []
    for case in sorted(SPECS):
        for framework in FRAMEWORKS:
            marks = [getattr(pytest.mark, framework)]
            reason = (bugs or {}).get((case, framework))
            if reason:
                marks.append(pytest.mark.xfail(reason=reason, strict=True))
            params.append(pytest.param(case, framework, marks=marks, id=f"{case}-{framework}"))
    return params


@pytest.fixture(scope="session")
def exported(tmp_path_factory):
    """``exported(case, framework) -> (model, path, report)``: each parity spec, with the same
    random weights in every framework, exported once."""
    folder = tmp_path_factory.mktemp("cases")
    cache = {}

    def get(case: str, framework: str):
        if (case, framework) not in cache:
            spec = SPECS[case]()
            model = Model(spec=spec, framework=framework).build(seed=0)
            model.set_weights(randomized_weights(spec))
            path = folder / f"{case}-{framework}.onnx"
            cache[case, framework] = (model, path, export.to_onnx(model, path))
        return cache[case, framework]

    return get


@pytest.fixture(scope="session")
def digits_mlp(digits, tmp_path_factory):
    """A digits MLP trained with llmasos (torch), saved as .h5, with its test split as a Dataset."""
    x_train, y_train, x_test, y_test = digits
    model = Model(input_dim=64, output_dim=10, framework="torch" if "torch" in FRAMEWORKS else FRAMEWORKS[0])
    model.add_layer("Dense", 64, activation="relu").add_layer("Dense", 10, activation="softmax")
    model.metadata["labels"] = [str(i) for i in range(10)]
    model.metadata["preprocessing"] = {"scale": 1 / 16}
    model.train(Dataset(x_train, y_train, mode="train"), Optimizer("Adam", lr=0.003), epochs=5, seed=0,
                progress=False)
    folder = tmp_path_factory.mktemp("digits")
    h5 = model.save(folder / "digits.h5")
    return {"model": model, "h5": h5, "folder": folder, "train": Dataset(x_train, y_train, mode="test"),
            "test": Dataset(x_test, y_test, mode="test")}


@pytest.fixture(autouse=True)
def brief_latency(monkeypatch):
    """Optimisation reports time each file only briefly here: these tests check what a report
    holds, not how fast a file runs (benchmarks/bench_export.py does)."""
    from llmasos.export import transform

    monkeypatch.setattr(transform, "LATENCY_SECONDS", 0.03)
