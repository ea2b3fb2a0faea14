"""Adversarial training, train(adversarial=), in both frameworks: an attack of eps 0 trains
exactly as plain training does (the hook only swaps the batch), PGD training makes the model more
robust than the same training without it, it composes with callbacks and checkpoints, and what it
does not go with is refused by name."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, robust
from llmasos.callbacks import Callback
from llmasos.errors import TrainingError

from ..conftest import framework_params
from .conftest import digits_cnn_spec


def _accuracy(model, x, y) -> float:
    return float((robust.predicted_labels(model, x) == y).mean())


class Epochs(Callback):
    def __init__(self) -> None:
        self.ends: list[int] = []

    def on_epoch_end(self, model, logs):
        self.ends.append(logs["epoch"])
        return False


@pytest.mark.parametrize("framework", framework_params())
def test_an_attack_of_eps_0_trains_as_plain_training_does(framework, digits):
    x, y = digits[0][:256].reshape(-1, 1, 8, 8), digits[1][:256]
    runs = []
    for adversarial in (None, robust.FGSM(eps=0.0)):
        model = digits_cnn_spec(framework)
        history = model.train(Dataset(x, y, mode="train"), Optimizer("Adam", lr=0.01), epochs=2, batch_size=32,
                              seed=0, progress=False, adversarial=adversarial)
        runs.append((history["loss"], model.get_weights()))
    assert runs[0][0] == runs[1][0]
    for layer, weights in runs[0][1].items():
        for name, value in weights.items():
            np.testing.assert_array_equal(value, runs[1][1][layer][name])


@pytest.mark.slow
@pytest.mark.parametrize("framework", framework_params())
def test_pgd_training_makes_the_model_more_robust_and_composes(framework, digits, tmp_path):
    x, y, x_test, y_test = digits
    x, x_test, y_test = x.reshape(-1, 1, 8, 8), x_test[:200].reshape(-1, 1, 8, 8), y_test[:200]
    attack = robust.PGD(eps=0.1, alpha=0.025, steps=3)
    models = {}
    for name, adversarial in (("plain", None), ("adversarial", attack)):
        model, epochs = digits_cnn_spec(framework), Epochs()
        model.train(Dataset(x, y, mode="train"), Optimizer("Adam", lr=0.003), epochs=4, batch_size=32, seed=0,
                    progress=False, adversarial=adversarial, callbacks=[epochs],
                    checkpoint=str(tmp_path / f"{name}.h5"))
        assert epochs.ends == [1, 2, 3, 4]
        models[name] = model
    hardened = models["adversarial"]
    # the checkpoint holds the adversarially trained weights
    again = Model.load(str(tmp_path / "adversarial.h5"))
    np.testing.assert_allclose(again.predict(x_test), hardened.predict(x_test), atol=1e-5)
    pgd = robust.PGD(eps=0.1, alpha=0.01, steps=20)
    plain_robust, hard_robust = (_accuracy(m, pgd(m, x_test, y_test), y_test) for m in models.values())
    assert hard_robust >= plain_robust + 0.15, (plain_robust, hard_robust)
    assert _accuracy(hardened, x_test, y_test) >= _accuracy(models["plain"], x_test, y_test) - 0.05


def test_what_adversarial_training_does_not_go_with_is_refused(digits):
    x, y = digits[0][:64].reshape(-1, 1, 8, 8), digits[1][:64]
    model = digits_cnn_spec("torch")
    with pytest.raises(TrainingError, match=r"adversarial= takes robust.PGD.*or robust.FGSM.*not DeepFool"):
        model.train(Dataset(x, y, mode="train"), Optimizer("Adam"), epochs=1, nproc=2, adversarial="deepfool")
    with pytest.raises(TrainingError, match=r"adversarial= takes robust.PGD.*unknown attack 'madry'"):
        model.train(Dataset(x, y, mode="train"), Optimizer("Adam"), epochs=1, adversarial="madry")
    regression = Model(input_dim=4, output_dim=1, framework="torch").add_layer("Dense", 1)
    with pytest.raises(TrainingError, match=r"attacks a classifier's labels; this model ends in 'linear'"):
        regression.train(np.zeros((8, 4), np.float32), np.zeros(8, np.float32), epochs=1, adversarial=robust.FGSM())
