"""A small digits CNN trained with llmasos in torch (two 3x3 convs, max-pool, two Dense layers, as
the issue's figures), and a test split of images in [0, 1] to attack."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer


def digits_cnn_spec(framework: str) -> Model:
    model = Model(input_shape=(1, 8, 8), output_dim=10, framework=framework)
    model.add_layer("Conv2D", 8, kernel_size=3, padding="same", activation="relu")
    model.add_layer("Conv2D", 8, kernel_size=3, padding="same", activation="relu")
    model.add_layer("MaxPool2D", 2).add_layer("Flatten")
    model.add_layer("Dense", 32, activation="relu").add_layer("Dense", 10, activation="softmax")
    return model


@pytest.fixture(scope="session")
def cnn(digits):
    """``(torch model, x_test (n, 1, 8, 8), y_test)``: trained for a few epochs on 1,000 images."""
    x, y, x_test, y_test = digits
    model = digits_cnn_spec("torch")
    model.train(Dataset(x[:1000].reshape(-1, 1, 8, 8), y[:1000]), Optimizer("Adam", lr=0.01), epochs=4,
                batch_size=32, seed=0)
    return model, x_test[:128].reshape(-1, 1, 8, 8), y_test[:128]
