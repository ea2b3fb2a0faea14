"""Gradient attacks (llmasos.robust.fgsm / pgd): torchattacks' adversarial examples bit for bit on
the same torch model, the TensorFlow path agreeing with the torch path on the same weights,
inference mode with the model's mode restored, the eps ball and the bounds kept, sanity checks
against gradient masking, and clear errors for bad input."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Model, robust
from llmasos.errors import AttackError

torch = pytest.importorskip("torch")

pytestmark = pytest.mark.torch


class Logits(torch.nn.Module):
    """The llmasos module as torchattacks takes a model: images in, logits out."""

    def __init__(self, model: Model) -> None:
        super().__init__()
        self.module = model.compiled.module

    def forward(self, x):
        return self.module(x, logits=True)


def _accuracy(model, x, y) -> float:
    return float((robust.predicted_labels(model, x) == y).mean())


def test_fgsm_and_pgd_equal_torchattacks_exactly(cnn):
    # torchattacks pins requests~=2.25.1, which the dev extra's tritonclient[http] (urllib3>=2) rules
    # out, so it is installed apart: `pip install torchattacks --no-deps` beside the dev extra
    torchattacks = pytest.importorskip("torchattacks", reason="the reference attacks: pip install torchattacks")
    model, x, y = cnn
    net, images, labels = Logits(model).eval(), torch.from_numpy(x), torch.from_numpy(y)
    expected = torchattacks.FGSM(net, eps=0.1)(images, labels).numpy()
    np.testing.assert_array_equal(robust.fgsm(model, x, y, eps=0.1), expected)
    expected = torchattacks.PGD(net, eps=0.1, alpha=0.01, steps=10, random_start=False)(images, labels).numpy()
    adversarial = robust.pgd(model, x, y, eps=0.1, alpha=0.01, steps=10, random_start=False)
    np.testing.assert_array_equal(adversarial, expected)
    assert _accuracy(model, adversarial, y) < _accuracy(model, x, y) - 0.2   # it does attack
    # L2: torchattacks' PGDL2 step for step; its norms are summed in another order (float noise)
    expected = torchattacks.PGDL2(net, eps=1.0, alpha=0.2, steps=10, random_start=False)(images, labels).numpy()
    np.testing.assert_allclose(robust.pgd(model, x, y, eps=1.0, alpha=0.2, steps=10, random_start=False, norm="l2"),
                               expected, atol=1e-5, rtol=0)


@pytest.mark.tf
def test_tensorflow_agrees_with_torch_on_the_same_weights(cnn):
    model, x, y = cnn
    other = model.to("tf")
    for eps in (0.05, 0.1):
        for attack in (robust.FGSM(eps), robust.PGD(eps, steps=10), robust.PGD(eps * 5, steps=5, norm="l2")):
            ours, theirs = attack(model, x, y), attack(other, x, y)
            # the same steps but where float noise flips a gradient's sign (an L-inf step moves by
            # alpha >= 0.005 then) or moves an L2 step by more than 1e-4: under 1% of the elements
            # (L2 steps of 0.5, at eps 1.0, let that noise part a few trajectories at ReLU and
            # max-pool kinks: 1.4% of the elements then)
            assert np.mean(np.abs(ours - theirs) > 1e-4) < 0.01, attack
            assert abs(_accuracy(model, ours, y) - _accuracy(other, theirs, y)) <= 0.01, attack


def test_the_eps_ball_and_the_bounds_hold_and_the_mode_is_restored(cnn):
    model, x, y = cnn
    before = model.get_weights()
    model.compiled.module.train()            # as a trainer leaves it: the attack runs in eval mode
    try:
        eps_x = robust.pgd(model, x, y, eps=0.3, steps=3, restarts=2)
        assert model.compiled.module.training
    finally:
        model.compiled.module.eval()
    assert np.abs(eps_x - x).max() <= 0.3 + 1e-6
    assert eps_x.min() >= 0.0 and eps_x.max() <= 1.0 and eps_x.min() == 0.0   # clipped, and reaching the bound
    l2 = robust.pgd(model, x, y, eps=0.5, steps=3, norm="l2")
    assert np.linalg.norm((l2 - x).reshape(len(x), -1), axis=1).max() <= 0.5 + 1e-5
    for layer, weights in model.get_weights().items():
        for name, value in weights.items():
            np.testing.assert_array_equal(value, before[layer][name])
    # flat rows in, flat rows out; random starts repeat with their seed
    flat = x.reshape(len(x), -1)
    assert robust.fgsm(model, flat, y, eps=0.1).shape == flat.shape
    np.testing.assert_array_equal(robust.pgd(model, x, y, eps=0.1, steps=2, seed=3),
                                  robust.pgd(model, x, y, eps=0.1, steps=2, seed=3))


def test_sanity_against_gradient_masking(cnn):
    model, x, y = cnn
    clean = _accuracy(model, x, y)
    # more steps never raise robust accuracy
    by_steps = [_accuracy(model, robust.pgd(model, x, y, eps=0.1, alpha=0.01, steps=s, random_start=False), y)
                for s in (1, 5, 10, 20)]
    assert by_steps == sorted(by_steps, reverse=True) and by_steps[-1] < clean - 0.3, by_steps
    # nor do more restarts
    by_restarts = [_accuracy(model, robust.pgd(model, x, y, eps=0.05, steps=5, restarts=r), y) for r in (1, 3)]
    assert by_restarts[1] <= by_restarts[0], by_restarts
    # an eps that spans the whole box leaves nothing standing
    assert _accuracy(model, robust.pgd(model, x, y, eps=1.0, steps=10), y) <= 0.02
    assert clean > 0.8


def test_bad_input_is_refused_naming_the_fix(cnn):
    model, x, y = cnn
    with pytest.raises(AttackError, match=r"eps must be a finite number >= 0.*got -0.1"):
        robust.fgsm(model, x, y, eps=-0.1)
    with pytest.raises(AttackError, match=r"inputs range over \[0, 2\], outside bounds=\(0, 1\).*bounds=\(0, 2\)"):
        robust.fgsm(model, x * 2, y, eps=0.1)
    assert robust.fgsm(model, x * 2, y, eps=0.1, bounds=(0, 2)).max() <= 2.0
    with pytest.raises(AttackError, match=r"labels must be class ids in \[0, 10\).*got \[0, 10\]"):
        robust.pgd(model, x, np.where(y == 9, 10, y), eps=0.1)
    with pytest.raises(AttackError, match=r"one class id per input \(128\)"):
        robust.fgsm(model, x, y[:5], eps=0.1)
    with pytest.raises(AttackError, match=r"an ONNX file has no gradients"):
        robust.fgsm("model.onnx", x, y, eps=0.1)
    with pytest.raises(AttackError, match=r"norm must be 'inf' \(L-infinity\) or 'l2', got 'l1'"):
        robust.pgd(model, x, y, eps=0.1, norm="l1")
    with pytest.raises(AttackError, match=r"restarts > 1 would repeat the same attack"):
        robust.pgd(model, x, y, eps=0.1, restarts=3, random_start=False)
    with pytest.raises(AttackError, match=r"unknown attack 'cw'; known: fgsm, pgd, deepfool"):
        robust.evaluate(model, (x, y), attacks=["cw"])


def test_deepfool_finds_near_minimal_examples(cnn):
    model, x, y = cnn
    right = robust.predicted_labels(model, x) == y
    adversarial = robust.deepfool(model, x, y, steps=50)
    fooled = robust.predicted_labels(model, adversarial) != y
    assert fooled[right].mean() >= 0.95 and np.array_equal(adversarial[~right], x[~right])
    delta = adversarial - x
    norms = np.linalg.norm(delta.reshape(len(x), -1), axis=1)
    # near the boundary: most examples are still classified right a fifth of the way back
    assert (robust.predicted_labels(model, x + 0.8 * delta) == y)[right].mean() >= 0.6
    # far smaller than what PGD-L2 uses at the same success (a maximum-norm attack spends its eps)
    pgd = robust.pgd(model, x, y, eps=float(np.quantile(norms[right], 0.95)), steps=20, norm="l2")
    assert np.median(norms[right]) < 0.8 * np.median(np.linalg.norm((pgd - x).reshape(len(x), -1), axis=1)[right])
    # an eps budget returns the clean input where more was needed
    budget = float(np.median(norms[right]))
    capped = robust.deepfool(model, x, y, eps=budget)
    capped_norms = np.linalg.norm((capped - x).reshape(len(x), -1), axis=1)
    assert capped_norms.max() <= budget + 1e-6 and np.array_equal(capped_norms > 0, right & (norms <= budget))


@pytest.mark.tf
def test_tensorflow_path_agrees_with_art_on_the_same_keras_model(cnn):
    pytest.importorskip("art", reason="the TF reference attacks: pip install adversarial-robustness-toolbox")
    import tensorflow as tf
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent
    from art.estimators.classification import TensorFlowV2Classifier

    model, x, y = cnn
    other = model.to("tf")
    name, output = other.spec.inputs[0].name, other.spec.outputs[0]

    def logits(images, training=False):   # ART calls its model with training=
        return other.compiled.logits({name: images}, training=training)[output]

    classifier = TensorFlowV2Classifier(
        logits, nb_classes=10, input_shape=(1, 8, 8), clip_values=(0.0, 1.0),
        loss_object=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    runs = [(robust.fgsm(other, x, y, eps=0.1), FastGradientMethod(classifier, eps=0.1).generate(x, y=y)),
            (robust.pgd(other, x, y, eps=0.1, alpha=0.01, steps=10, random_start=False),
             ProjectedGradientDescent(classifier, eps=0.1, eps_step=0.01, max_iter=10, num_random_init=0,
                                      verbose=False).generate(x, y=y))]
    for ours, theirs in runs:
        assert np.mean(np.abs(ours - theirs) > 1e-4) < 0.01
        assert abs(_accuracy(other, ours, y) - _accuracy(other, theirs, y)) <= 0.01
