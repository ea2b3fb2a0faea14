"""Step options mean the same in torch and TensorFlow: gradient clipping (torch.nn.utils'
clip_grad_norm_/clip_grad_value_), accumulation (accumulate=4 at batch 16 is batch 64, a last
partial group included, the schedule counting optimizer steps) and mixed precision (bf16 trains
digits as well as float32; weights stay float32, in memory and in the .h5)."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer
from llmasos.adapters import get_backend
from llmasos.adapters.base import StepOptions
from llmasos.errors import TrainingError
from llmasos.spec import ModelSpec

pytestmark = [pytest.mark.torch, pytest.mark.tf]


def _mlp() -> ModelSpec:
    return ModelSpec.sequential((64,)).add("Dense", 32, activation="tanh").add("Dense", 10, activation="softmax")


def _train(framework, weights, x, y, optimizer, epochs=2, **options) -> tuple[np.ndarray, dict]:
    model = Model(spec=_mlp(), framework=framework).build()
    model.set_weights(weights)
    history = model.train(Dataset(x, y, mode="train"), optimizer, epochs=epochs, seed=1, progress=False, **options)
    return np.array(history["loss"]), model.get_weights()


def _close(a: dict, b: dict, atol: float) -> None:
    for layer, ws in a.items():
        for name, value in ws.items():
            np.testing.assert_allclose(b[layer][name], value, atol=atol, err_msg=f"{layer}/{name}")


@pytest.fixture(scope="module")
def start():
    return get_backend("torch").build(_mlp(), seed=0).get_weights()


@pytest.mark.parametrize("framework", ["torch", "tf"])
@pytest.mark.parametrize("make", [lambda: Optimizer("SGD", lr=0.1, momentum=0.9, schedule="step", step_size=3,
                                                    gamma=0.5),
                                  lambda: Optimizer("Adam", lr=0.01)], ids=["sgd-step-schedule", "adam"])
def test_accumulate_4_at_batch_16_is_batch_64(framework, make, start, digits):
    x, y = digits[0][:200], digits[1][:200]     # 200 rows: 3 full groups and a last one of 8 rows
    _, whole = _train(framework, start, x, y, make(), batch_size=64)
    _, accumulated = _train(framework, start, x, y, make(), batch_size=16, accumulate=4)
    _close(whole, accumulated, 1e-5)
    _, plain = _train(framework, start, x, y, make(), batch_size=16)
    assert not np.allclose(plain["dense"]["kernel"], whole["dense"]["kernel"], atol=1e-3)


@pytest.mark.parametrize("options", [dict(clip_grad_norm=0.5), dict(clip_grad_value=0.01),
                                     dict(clip_grad_value=0.02, clip_grad_norm=0.3, accumulate=2)],
                         ids=["norm", "value", "both-accumulated"])
def test_clipping_parity(options, start, digits):
    x, y = digits[0][:256], digits[1][:256]
    losses = {}
    for framework in ("torch", "tf"):
        losses[framework], weights = _train(framework, start, x, y, Optimizer("SGD", lr=0.5), batch_size=32,
                                            **options)
        losses[framework + "-weights"] = weights
    np.testing.assert_allclose(losses["tf"], losses["torch"], rtol=1e-5)
    _close(losses["torch-weights"], losses["tf-weights"], 2e-5)
    unclipped = _train("torch", start, x, y, Optimizer("SGD", lr=0.5), batch_size=32,
                       accumulate=options.get("accumulate", 1))[1]
    assert np.abs(unclipped["dense"]["kernel"] - losses["torch-weights"]["dense"]["kernel"]).max() > 1e-3


def test_torch_clip_is_torch_nn_utils(start):
    """One step by hand with torch's own clip_grad_norm_ gives the adapter's weights."""
    import torch

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(16, 64)).astype(np.float32), rng.integers(0, 10, 16)
    model = get_backend("torch").build(_mlp())
    model.set_weights(start)
    model.trainer(Optimizer("SGD", lr=1.0), "cross_entropy", options=StepOptions(clip_grad_norm=0.1)) \
        .train_step([x], y, 1.0)
    w1, b1 = (torch.tensor(start["dense"][n], requires_grad=True) for n in ("kernel", "bias"))
    w2, b2 = (torch.tensor(start["dense_1"][n], requires_grad=True) for n in ("kernel", "bias"))
    logits = torch.tanh(torch.from_numpy(x) @ w1 + b1) @ w2 + b2
    torch.nn.functional.cross_entropy(logits, torch.from_numpy(y)).backward()
    torch.nn.utils.clip_grad_norm_([w1, b1, w2, b2], 0.1)
    np.testing.assert_allclose(model.get_weights()["dense"]["kernel"], (w1 - w1.grad).detach().numpy(), atol=1e-6)


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_bf16_mixed_trains_digits_as_well_as_fp32(framework, start, digits, tmp_path):
    x, y, x_test, y_test = digits
    scores = {}
    for precision in ("32", "bf16-mixed"):
        model = Model(spec=_mlp(), framework=framework).build()
        model.set_weights(start)
        model.train(Dataset(x, y, mode="train"), Optimizer("Adam", lr=0.01), epochs=4, batch_size=32, seed=0,
                    precision=precision, progress=False)
        scores[precision] = model.evaluate(Dataset(x_test, y_test, mode="test"))["accuracy"]
        assert all(w.dtype == np.float32 for ws in model.get_weights().values() for w in ws.values())
        native = model.backend_model.parameters() if framework == "torch" else model.backend_model.variables
        assert {str(getattr(v, "dtype")).split(".")[-1].replace("'>", "") for v in native} <= {"float32", "int64"}
    assert scores["32"] > 0.9
    assert abs(scores["bf16-mixed"] - scores["32"]) <= 0.01, scores
    path = model.save(tmp_path / "bf16.h5")
    with h5py.File(path) as f:
        dtypes = set()
        f.visititems(lambda name, item: dtypes.add(item.dtype) if isinstance(item, h5py.Dataset)
                     and item.dtype.kind == "f" else None)
    assert dtypes == {np.dtype("float32")}


@pytest.mark.parametrize("framework", ["torch", "tf"])
def test_fp16_mixed_with_loss_scaling_trains_on_cpu(framework, start, digits):
    x, y = digits[0][:512], digits[1][:512]
    losses, weights = _train(framework, start, x, y, Optimizer("Adam", lr=0.01), epochs=3, batch_size=32,
                             precision="16-mixed")
    assert losses[-1] < 0.6 * losses[0]
    assert all(w.dtype == np.float32 for ws in weights.values() for w in ws.values())


def test_bad_options_are_clear_errors():
    with pytest.raises(TrainingError, match="precision must be one of 32, 16-mixed, bf16-mixed, got 'fp8'"):
        StepOptions(precision="fp8")
    with pytest.raises(TrainingError, match="accumulate must be a positive int"):
        StepOptions(accumulate=0)
    with pytest.raises(TrainingError, match="clip_grad_norm must be a positive number"):
        StepOptions(clip_grad_norm=-1.0)
