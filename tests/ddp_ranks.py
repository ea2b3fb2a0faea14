"""Run under torch's launcher by tests/test_distributed.py: every rank trains the digits MLP and a
small CNN as the same program does under torchrun, and saves its own weights (rank-suffixed .npz)
for the test to compare; then a negative control whose ranks do not combine their gradients.

    python -m torch.distributed.run --standalone --nproc-per-node 2 tests/ddp_ranks.py OUT_DIR
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


def main(out: str) -> None:
    from llmasos.adapters.torch import distributed

    rank = os.environ["RANK"]
    np.savez(os.path.join(out, f"mlp-{rank}.npz"), **flat(train(mlp(), MLP_ROWS).get_weights()))
    np.savez(os.path.join(out, f"cnn-{rank}.npz"), **flat(train(cnn(), CNN_ROWS).get_weights()))
    distributed.TorchGroup.attach = lambda self, trainer: None     # each rank keeps its own gradient
    np.savez(os.path.join(out, f"control-{rank}.npz"), **flat(train(mlp(), MLP_ROWS).get_weights()))


if __name__ == "__main__":
    main(sys.argv[1])
