"""The program every rank runs in tests/test_distributed.py and tests/adapters/test_tf_distributed.py:
each rank trains the digits MLP and a small CNN as a script does under a launcher, and saves its own
weights (rank-suffixed .npz) for the test to compare; then a negative control whose ranks do not
combine their gradients.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_ranks.py OUT_DIR
    TF_CONFIG=... python tests/ddp_ranks.py OUT_DIR tf          (one process per worker)
"""

from __future__ import annotations

import os
import sys

import numpy as np

MLP_ROWS, CNN_ROWS = 449, 461    # last global batches of 1 row (rank 1 gets none) and 13 rows (7 + 6)


def digits(rows: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return (x[:rows] / 16.0).astype(np.float32), y[:rows].astype(np.int64)


def mlp(framework: str = "torch"):
    from llmasos import Model

    model = Model(input_dim=64, output_dim=10, framework=framework)
    return model.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax")


def cnn(framework: str = "torch"):
    from llmasos import Model

    model = Model(input_shape=(1, 8, 8), output_dim=10, framework=framework)
    model.add_layer("Conv2D", 4, kernel_size=3, activation="relu").add_layer("MaxPool2D", 2)
    return model.add_layer("Flatten").add_layer("Dense", 10, activation="softmax")


def train(model, rows: int, epochs: int = 2, **options):
    from llmasos import Dataset, Optimizer

    x, y = digits(rows)
    if len(model.spec.inputs[0].shape) == 3:
        x = x.reshape(-1, 1, 8, 8)
    model.train(Dataset(x, y, mode="train"), Optimizer("Adam", lr=1e-2), epochs=epochs, batch_size=64, seed=0,
                progress=False, **options)
    return model


def flat(weights: dict) -> dict[str, np.ndarray]:
    return {f"{layer}/{name}": value for layer, values in weights.items() for name, value in values.items()}


def max_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(np.asarray(a[k]) - np.asarray(b[k])).max()) for k in a)


def compare(out, framework: str) -> None:
    """The test on what the ranks saved in ``out``: the same weights on every rank, those of one
    process within 1e-5, and a control without the all-reduce that differs."""
    from pathlib import Path

    ranks = {name: [dict(np.load(Path(out) / f"{name}-{r}.npz")) for r in (0, 1)] for name in ("mlp", "cnn", "control")}
    for name, build, rows in (("mlp", mlp, MLP_ROWS), ("cnn", cnn, CNN_ROWS)):
        single = flat(train(build(framework), rows).get_weights())
        assert max_diff(ranks[name][0], ranks[name][1]) == 0.0, name          # every rank holds the same weights
        assert max_diff(ranks[name][0], single) <= 1e-5, (name, max_diff(ranks[name][0], single))   # only speed
        assert max_diff(single, flat(build(framework).build(0).get_weights())) > 1e-2    # it did train
    control = ranks["control"]
    single = flat(train(mlp(framework), MLP_ROWS).get_weights())
    assert max_diff(control[0], control[1]) > 1e-3                            # without all-reduce ranks drift apart
    assert max_diff(control[0], single) > 1e-3


def main(out: str, framework: str = "torch") -> None:
    import importlib

    from llmasos import distributed

    distributed.join(framework)          # first: TensorFlow sets up its collectives before its first op
    rank = distributed.context().rank
    np.savez(os.path.join(out, f"mlp-{rank}.npz"), **flat(train(mlp(framework), MLP_ROWS).get_weights()))
    np.savez(os.path.join(out, f"cnn-{rank}.npz"), **flat(train(cnn(framework), CNN_ROWS).get_weights()))
    adapter = importlib.import_module(f"llmasos.adapters.{framework}.distributed")
    group = adapter.TorchGroup if framework == "torch" else adapter.TFGroup
    group.attach = lambda self, trainer: None      # each rank keeps its own gradient
    np.savez(os.path.join(out, f"control-{rank}.npz"), **flat(train(mlp(framework), MLP_ROWS).get_weights()))


if __name__ == "__main__":
    main(*sys.argv[1:])
