"""Attacks on a model that carries its preprocessing (a zoo image model: normalised pixels in,
``metadata["preprocess"]`` with the per-channel mean and std): the default bounds are the
normalised image of [0, 1] per channel and eps is in pixel units, so the examples equal
torchattacks' with ``set_normalization_used(mean, std)``; an explicit ``bounds=`` wins."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, robust

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch

MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]   # ImageNet's, as the zoo's image models carry


@pytest.fixture(scope="module")
def normalised():
    """``(zoo-style model, normalised images, labels, pixels)``: a tiny 3-channel CNN."""
    model = Model(input_shape=(3, 6, 6), output_dim=4, framework="torch")
    model.add_layer("Conv2D", 4, kernel_size=3, activation="relu").add_layer("Flatten")
    model.add_layer("Dense", 4, activation="softmax")
    model.build(0)
    model.metadata = {"zoo": "tiny", "preprocess": {"size": [6, 6], "mean": MEAN, "std": STD}}
    pixels = np.random.default_rng(0).uniform(0, 1, size=(32, 3, 6, 6)).astype(np.float32)
    pixels[:, :, 0, 0] = 0.0   # pixels at the bounds: the per-channel clip must hold them there
    pixels[:, :, 0, 1] = 1.0
    mean, std = np.reshape(MEAN, (1, 3, 1, 1)), np.reshape(STD, (1, 3, 1, 1))
    x = ((pixels - mean) / std).astype(np.float32)
    y = robust.predicted_labels(model, x)   # what it predicts: the attack has something to flip
    return model, x, y, pixels, mean, std


class Logits(torch.nn.Module):
    def __init__(self, model: Model) -> None:
        super().__init__()
        self.module = model.compiled.module

    def forward(self, x):
        return self.module(x, logits=True)


def test_default_bounds_are_pixels_and_equal_torchattacks_with_normalization(normalised):
    import torchattacks

    model, x, y, pixels, mean, std = normalised
    eps = 8 / 255
    ours = {"fgsm": robust.fgsm(model, x, y, eps),
            "pgd": robust.pgd(model, x, y, eps, alpha=2 / 255, steps=5, random_start=False)}
    theirs = {"fgsm": torchattacks.FGSM(Logits(model), eps=eps),
              "pgd": torchattacks.PGD(Logits(model), eps=eps, alpha=2 / 255, steps=5, random_start=False)}
    for name, attack in theirs.items():
        attack.set_normalization_used(MEAN, STD)
        # torchattacks takes normalised inputs, attacks their pixels and hands back normalised examples
        adv = attack(torch.from_numpy(x), torch.from_numpy(y)).numpy()
        np.testing.assert_allclose(ours[name], adv, atol=1e-5, err_msg=name)
        # per channel: within [(0 - mean) / std, (1 - mean) / std] and within eps / std of x
        assert (ours[name] >= (0 - mean) / std - 1e-6).all() and (ours[name] <= (1 - mean) / std + 1e-6).all()
        assert (np.abs(ours[name] - x) <= eps / std + 1e-6).all()
        # the attack worked: eps / std is up to 0.15 in the normalised units, not 0.03
        assert np.abs(ours[name] - x).max() > 1.5 * eps
    assert (robust.predicted_labels(model, ours["pgd"]) != y).mean() > 0.2


def test_explicit_bounds_win_and_mean_the_model_input_space(normalised):
    model, x, y, *_ = normalised
    eps, bounds = 0.1, (-3.0, 3.0)
    adv = robust.fgsm(model, x, y, eps, bounds=bounds)
    # eps in the inputs' own units, the same for every channel, and the bounds as given
    moved = np.abs(adv - x)
    assert moved.max() <= eps + 1e-6
    # every pixel the gradient reaches moves by eps in every channel (not eps / std)
    assert (np.isclose(moved, eps, atol=1e-5) | (moved < 1e-6)).all() and np.isclose(moved, eps, atol=1e-5).mean() > 0.5
    pgd = robust.pgd(model, x, y, eps, steps=3, random_start=False, bounds=(-2.2, 2.65))
    assert pgd.min() >= -2.2 and pgd.max() <= 2.65 and np.abs(pgd - x).max() <= eps + 1e-6


def test_square_and_evaluate_work_in_pixels_too(normalised):
    model, x, y, pixels, mean, std = normalised
    eps = 0.05
    adv = robust.square(model, x, y, eps, queries=50)
    adv_pixels = adv * std + mean
    assert adv_pixels.min() >= -1e-5 and adv_pixels.max() <= 1 + 1e-5
    assert np.abs(adv_pixels - pixels).max() <= eps + 1e-5
    assert np.abs(adv_pixels - pixels).max() > eps / 2          # it moved, by pixel-space eps
    report = robust.evaluate(model, (x, y), attacks=["fgsm"], eps=[eps])
    # the mean perturbation is in pixel units: FGSM moves every pixel not held at a bound by eps
    assert report.rows[0]["mean_perturbation"] == pytest.approx(eps, abs=1e-5)


def test_preprocessing_that_does_not_fit_the_inputs_is_refused(normalised):
    from llmasos.errors import AttackError

    model, x, y, *_ = normalised
    two_channels = Model(input_shape=(2, 6, 6), output_dim=4, framework="torch")
    two_channels.add_layer("Flatten").add_layer("Dense", 4, activation="softmax")
    two_channels.build(0)
    two_channels.metadata = {"preprocess": {"mean": MEAN, "std": STD}}
    with pytest.raises(AttackError, match="normalises 3 channels.*pass bounds="):
        robust.fgsm(two_channels, x[:, :2], y, 0.1)
