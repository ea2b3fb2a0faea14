"""Losses: each equals its reference (torch.nn.functional, torchvision, Keras, transformers' own model
losses) and gives the same number in torch and TensorFlow; names, parameters and user losses."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import losses
from llmasos.errors import TrainingError

pytestmark = [pytest.mark.torch, pytest.mark.tf]


def _run(framework: str, loss, y_true, y_pred, weights=None) -> float:
    """The batch loss of ``loss`` computed by a framework's adapter on NumPy inputs."""
    if framework == "torch":
        import torch

        from llmasos.adapters.torch.losses import LOSS_OPS

        to = torch.from_numpy
    else:
        from llmasos.adapters.tf.losses import LOSS_OPS   # before TensorFlow: llmasos loads what must precede it
        import tensorflow as tf

        to = tf.constant
    w = None if weights is None else to(np.asarray(weights, np.float32))
    return float(losses.batch_loss(LOSS_OPS, losses.get(loss), to(y_true), to(y_pred), w))


def _both(loss, y_true, y_pred, reference: float, weights=None, rel=1e-5):
    values = {fw: _run(fw, loss, y_true, y_pred, weights) for fw in ("torch", "tf")}
    assert values["torch"] == pytest.approx(reference, rel=rel, abs=1e-6), values
    assert values["tf"] == pytest.approx(values["torch"], rel=1e-5, abs=1e-6), values


rng = np.random.default_rng(0)
LOGITS = rng.normal(scale=2.0, size=(8, 5)).astype(np.float32)
CLASSES = rng.integers(0, 5, 8)
BINARY = rng.integers(0, 2, (8, 5)).astype(np.float32)
VALUES = rng.normal(size=(8, 5)).astype(np.float32)


def test_torch_functional_references():
    import torch
    import torch.nn.functional as F

    x, c, b, v = (torch.from_numpy(a) for a in (LOGITS, CLASSES, BINARY, VALUES))
    _both("cross_entropy", CLASSES, LOGITS, F.cross_entropy(x, c).item())
    _both(losses.CrossEntropy(label_smoothing=0.2), CLASSES, LOGITS, F.cross_entropy(x, c, label_smoothing=0.2).item())
    _both("binary_cross_entropy", BINARY, LOGITS, F.binary_cross_entropy_with_logits(x, b).item())
    _both("mse", VALUES, LOGITS, F.mse_loss(x, v).item())
    _both("mae", VALUES, LOGITS, F.l1_loss(x, v).item())
    _both(losses.Huber(delta=0.7), VALUES, LOGITS, F.huber_loss(x, v, delta=0.7).item())


def test_focal_matches_torchvision_and_keras():
    import torch
    from torchvision.ops import sigmoid_focal_loss

    x, b = torch.from_numpy(LOGITS), torch.from_numpy(BINARY)
    for gamma, alpha in ((2.0, 0.25), (1.0, -1.0), (0.0, 0.5)):
        reference = sigmoid_focal_loss(x, b, alpha=alpha, gamma=gamma, reduction="mean").item()
        _both(losses.Focal(gamma=gamma, alpha=alpha, multiclass=False), BINARY, LOGITS, reference)
    from llmasos.adapters import get_backend

    get_backend("tf")   # loads what must come before TensorFlow
    import keras

    reference = float(keras.losses.CategoricalFocalCrossentropy(alpha=0.25, gamma=2.0, from_logits=True)(
        np.eye(5, dtype=np.float32)[CLASSES], LOGITS))
    _both(losses.Focal(multiclass=True), CLASSES, LOGITS, reference, rel=1e-4)   # Keras clips p at 1e-7
    assert str(losses.get("focal").for_activation("softmax")) == "focal(multiclass=True)"
    assert losses.get("focal").for_activation("sigmoid").task == "binary"


def test_ctc_matches_wav2vec2_mean_loss():
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2ForCTC

    torch.manual_seed(0)
    config = Wav2Vec2Config(vocab_size=7, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                            intermediate_size=32, conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 8),
                            num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2, ctc_loss_reduction="mean",
                            pad_token_id=0, do_stable_layer_norm=False)
    model = Wav2Vec2ForCTC(config).eval()
    audio = torch.randn(3, 800)
    labels = torch.tensor([[1, 2, 3, 4], [2, 2, 5, -100], [6, -100, -100, -100]])
    with torch.no_grad():
        out = model(audio, labels=labels)
    logits, y = out.logits.numpy(), labels.numpy()
    _both("ctc", y, logits, out.loss.item())
    # an impossible alignment (more labels than frames): infinite, or 0 with zero_infinity
    long = np.ones((1, logits.shape[1] + 2), np.int64)
    repeats = np.array([[1, 2, 2, 3]])        # 4 labels and a blank between the 2s need 5 frames
    for framework in ("torch", "tf"):
        assert _run(framework, "ctc", long, logits[:1]) == np.inf
        assert np.isfinite(_run(framework, "ctc", repeats, logits[:1, :5]))
        assert _run(framework, "ctc", repeats, logits[:1, :4]) == np.inf
        assert _run(framework, losses.CTC(zero_infinity=True), long, logits[:1]) == 0.0


def test_sequence_cross_entropy_matches_gpt2_lm_loss():
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=11, n_positions=16, n_embd=8, n_layer=1, n_head=2)).eval()
    ids = torch.randint(0, 11, (3, 6))
    labels = ids.clone()
    labels[1, 4:] = -100          # padding is left out of the mean
    with torch.no_grad():
        out = model(ids, labels=labels)
    _both(losses.SequenceCrossEntropy(shift=True), labels.numpy(), out.logits.numpy(), out.loss.item())
    assert str(losses.get("causal_lm(shift=True)")) == "sequence_cross_entropy(shift=True)"
    # without the shift: position t against label t
    import torch.nn.functional as F

    plain = F.cross_entropy(out.logits.reshape(-1, 11), labels.reshape(-1)).item()
    _both("sequence_cross_entropy", labels.numpy(), out.logits.numpy(), plain)


def test_weights_weigh_each_sample():
    import torch
    import torch.nn.functional as F

    w = rng.uniform(0, 2, 8).astype(np.float32)
    per = F.cross_entropy(torch.from_numpy(LOGITS), torch.from_numpy(CLASSES), reduction="none").numpy()
    _both("cross_entropy", CLASSES, LOGITS, float((per * w).sum() / 8), weights=w)


def test_user_loss_runs_in_both_frameworks():
    @losses.register("log_cosh_test")
    def log_cosh(ops, y_true, y_pred):
        error = y_pred - y_true
        return ops.log((ops.exp(error) + ops.exp(-error)) / 2)

    expected = float(np.mean(np.log(np.cosh(LOGITS.astype(np.float64) - VALUES))))
    _both("log_cosh_test", VALUES, LOGITS, expected)
    assert losses.get(log_cosh) is losses.get("log_cosh_test")
    with pytest.raises(TrainingError, match="already registered"):
        losses.register("log_cosh_test")(lambda ops, t, p: p)

    def batch_mean(ops, y_true, y_pred):
        return ops.mean(y_pred - y_true)

    with pytest.raises(TrainingError, match="one value per sample"):
        _run("torch", batch_mean, VALUES, LOGITS)


def test_names_and_errors():
    assert losses.resolve_loss("softmax", "sparse_categorical_crossentropy") == "cross_entropy"
    assert losses.resolve_loss("linear", "L1") == "mae"
    assert str(losses.get("huber(delta=2.0)")) == "huber(delta=2.0)"
    assert losses.get("huber(delta=2.0)") == losses.Huber(delta=2.0) != losses.Huber()
    with pytest.raises(TrainingError, match=r"unknown loss 'hinge'; known: .*binary_cross_entropy, .*focal.* \(or register your own"):
        losses.get("hinge")
    with pytest.raises(TrainingError, match="has no parameter gama; it takes gamma, alpha, multiclass"):
        losses.Focal(gama=2)
    with pytest.raises(TrainingError, match="label_smoothing must be in"):
        losses.get("cross_entropy(label_smoothing=2)")
    with pytest.raises(TrainingError, match="cannot read the loss"):
        losses.get("focal(2)")
