"""The torch trainer's fast paths give the neutral numbers: plain cross-entropy as one
``F.cross_entropy`` equals :func:`llmasos.losses.batch_loss` (value and gradients, with label
smoothing and sample weights), and the fused optimizers torch runs on the CPU step exactly as
torch.optim's reference loop does, also after their state went through the neutral layout."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from llmasos import Optimizer  # noqa: E402
from llmasos.adapters import get_backend  # noqa: E402
from llmasos.adapters.torch.losses import LOSS_OPS  # noqa: E402
from llmasos.adapters.torch.train import _native_loss  # noqa: E402
from llmasos.losses import batch_loss, get  # noqa: E402
from llmasos.spec import ModelSpec  # noqa: E402

pytestmark = pytest.mark.torch


@pytest.mark.parametrize("loss_text", ["cross_entropy", "cross_entropy(label_smoothing=0.2)"])
@pytest.mark.parametrize("weighted", [False, True])
def test_native_cross_entropy_is_the_neutral_loss(loss_text, weighted):
    rng = np.random.default_rng(0)
    loss = get(loss_text)
    native = _native_loss(loss)
    assert native is not None
    labels = torch.from_numpy(rng.integers(0, 5, 7))
    weights = torch.from_numpy(rng.uniform(0, 2, 7).astype(np.float32)) if weighted else None
    values = []
    for fn in (lambda out: native(out, labels, weights), lambda out: batch_loss(LOSS_OPS, loss, labels, out, weights)):
        out = torch.from_numpy(rng.normal(size=(7, 5)).astype(np.float32)) if not values else values[0][2].clone()
        out = out.detach().requires_grad_(True)
        value = fn(out)
        value.backward()
        values.append((value.item(), out.grad.numpy().copy(), out.detach()))
    assert values[0][0] == pytest.approx(values[1][0], rel=1e-6, abs=1e-7)
    np.testing.assert_allclose(values[0][1], values[1][1], rtol=1e-5, atol=1e-7)


def test_only_plain_cross_entropy_takes_the_native_path():
    assert _native_loss(get("focal")) is None
    assert _native_loss(get("sequence_cross_entropy")) is None
    assert _native_loss(get("mse")) is None


@pytest.mark.parametrize("name, options", [("Adam", {}), ("AdamW", {"weight_decay": 0.01}),
                                           ("SGD", {"momentum": 0.9}), ("SGD", {})])
def test_fused_cpu_optimizer_steps_as_torch_optim(name, options):
    """Three steps through the trainer (fused on the CPU), its state saved in the neutral layout
    and loaded into a fresh trainer for two more, against torch.optim's single-tensor loop."""
    rng = np.random.default_rng(1)
    spec = ModelSpec.sequential((6,)).add("Dense", 8, activation="relu").add("Dense", 3, activation="softmax")
    backend = get_backend("torch")
    model = backend.build(spec, seed=0)
    start = {layer: {k: v.copy() for k, v in ws.items()} for layer, ws in model.get_weights().items()}
    batches = [(rng.normal(size=(5, 6)).astype(np.float32), rng.integers(0, 3, 5)) for _ in range(5)]
    optimizer = Optimizer(name, lr=0.05, **options)
    trainer = model.trainer(optimizer, "cross_entropy", seed=0)
    assert trainer.optimizer.defaults.get("fused") is True
    for x, y in batches[:3]:
        trainer.train_step([x], y, 0.05)
    state = trainer.get_state()
    again = model.trainer(optimizer, "cross_entropy", seed=0)
    again.set_state(state)
    for x, y in batches[3:]:
        again.train_step([x], y, 0.05)

    reference = backend.build(spec, seed=0)
    reference.set_weights(start)
    module = reference.module
    kind = {"Adam": torch.optim.Adam, "AdamW": torch.optim.AdamW, "SGD": torch.optim.SGD}[name]
    keys = ("momentum", "nesterov", "weight_decay") if name == "SGD" else ("betas", "eps", "weight_decay")
    torch_opt = kind(module.parameters(), lr=0.05, foreach=False, **{k: trainer.optimizer.defaults[k] for k in keys})
    for x, y in batches:
        torch_opt.zero_grad()
        torch.nn.functional.cross_entropy(module(torch.from_numpy(x), logits=True), torch.from_numpy(y)).backward()
        torch_opt.step()
    got, want = model.get_weights(), reference.get_weights()
    for layer, ws in want.items():
        for key, value in ws.items():
            np.testing.assert_allclose(got[layer][key], value, rtol=1e-5, atol=1e-6, err_msg=f"{layer}/{key}")
