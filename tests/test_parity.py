"""Same spec + same weights => same numbers in PyTorch and TensorFlow: forward, save/load across
frameworks, and training step by step. Each case would fail on a wrong layout conversion."""

from __future__ import annotations

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer
from llmasos.adapters import get_backend
from llmasos.spec import ModelSpec

pytestmark = [pytest.mark.torch, pytest.mark.tf]


def _images(shape=(3, 9, 9)):
    return ModelSpec.sequential(shape)


def _seq(shape=(7, 6)):
    return ModelSpec.sequential(shape)


def _functional():
    spec = ModelSpec()
    spec.add_input("image", (4, 8, 8)).add_input("extra", (5,))
    spec.add("Conv2D", 4, kernel_size=3, padding="same", activation="relu", name="c1", inputs="image")
    spec.add("Add", name="skip", inputs=["image", "c1"])
    spec.add("Concatenate", axis=1, name="cat", inputs=["skip", "c1"])
    spec.add("BatchNorm", name="bn")
    spec.add("GlobalAvgPool2D", name="gap")
    spec.add("Concatenate", name="joined", inputs=["gap", "extra"])
    spec.add("Dense", 3, activation="softmax", name="head")
    spec.add("Dense", 2, name="aux", inputs="joined")
    return spec.set_outputs(["head", "aux"])


def _cross_attention():
    spec = ModelSpec()
    spec.add_input("query", (5, 8)).add_input("memory", (7, 6))
    spec.add("MultiHeadAttention", 2, key_dim=3, name="attn", inputs=["query", "memory"])
    return spec


def _three_input_attention():
    spec = ModelSpec()
    spec.add_input("q", (5, 8)).add_input("k", (7, 6)).add_input("v", (7, 4))
    spec.add("MultiHeadAttention", 4, name="attn", inputs=["q", "k", "v"])
    return spec


def _masked_attention():
    """Projected self-attention with a padding mask (ReLU zeroes about half the keys) and causality."""
    spec = ModelSpec()
    spec.add_input("x", (6, 8)).add_input("keep", (6,))
    spec.add("Activation", "relu", name="mask", inputs="keep")
    for role in ("q", "k", "v"):
        spec.add("Dense", 8, name=role, inputs="x")
    spec.add("Attention", 2, causal=True, name="attn", inputs=["q", "k", "v", "mask"])
    return spec.add("Dense", 6, activation="gelu_tanh", name="out")


def _cached_attention():
    """Incremental decoding: 3 cached keys/values before 4 new positions, causal from the end."""
    spec = ModelSpec()
    spec.add_input("x", (4, 8)).add_input("past_key", (3, 8)).add_input("past_value", (3, 4))
    for role, size in (("q", 8), ("k", 8), ("v", 4)):
        spec.add("Dense", size, name=role, inputs="x")
    spec.add("Concatenate", axis=1, name="key", inputs=["past_key", "k"])
    spec.add("Concatenate", axis=1, name="value", inputs=["past_value", "v"])
    spec.add("Attention", 2, causal=True, name="attn", inputs=["q", "key", "value"])
    return spec.set_outputs(["attn", "key"])


def _tied_language_model():
    """Token + position embeddings (positions after a 3-step cache), [CLS]-style and last-token
    picks, and a head tied to the token embedding."""
    spec = ModelSpec()
    spec.add_input("ids", (5,), "int64").add_input("past", (3, 2))
    spec.add("Embedding", 8, vocab_size=20, name="wte", inputs="ids")
    spec.add("PositionEmbedding", 10, name="wpe", inputs=["wte", "past"])
    spec.add("LayerNorm", eps=1e-12, name="ln")
    spec.add("TakeToken", 0, name="first", inputs="ln")
    spec.add("TakeToken", -1, name="last", inputs="ln")
    spec.add("Unembedding", embedding="wte", name="logits", inputs="ln")
    return spec.set_outputs(["logits", "first", "last"])


def _shared_vocabulary():
    """Two id inputs looked up in one table (Marian's shared vocabulary), scaled, and a biased
    head tied to the same table."""
    spec = ModelSpec()
    spec.add_input("source", (5,), "int64").add_input("target", (5,), "int64")
    spec.add("Embedding", 8, vocab_size=20, name="shared", inputs="source")
    spec.add("Embedding", tied_to="shared", name="target_embed", inputs="target")
    spec.add("Rescaling", 2.0, offset=0.5, name="scaled")
    spec.add("Add", name="sum", inputs=["shared", "scaled"])
    return spec.add("Unembedding", embedding="shared", use_bias=True, name="logits")


def _waveform():
    """A raw signal into channels (Wav2Vec2's feature encoder) and back to a sequence: instance
    and group norm, a grouped convolution whose extra last frame is cropped."""
    return (ModelSpec.sequential((40,)).add("Reshape", [1, -1]).add("Conv1D", 6, kernel_size=5, stride=3)
            .add("GroupNorm", 6).add("Activation", "gelu").add("Conv1D", 6, kernel_size=4, padding=2, groups=3)
            .add("GroupNorm", 3, eps=1e-3).add("Permute", [2, 1]).add("Cropping1D", [0, 1]).add("Dense", 4))


# Every layer kind, every padding mode, layouts that need permuting (Flatten after conv).
SPECS = {
    "dense-activations": lambda: ModelSpec.sequential((10,)).add("Dense", 8, activation="gelu")
        .add("Dense", 8, activation="silu").add("Dense", 8, activation="leaky_relu", negative_slope=0.1)
        .add("Dense", 8, activation="tanh").add("Activation", "sigmoid").add("Dense", 4, activation="softmax"),
    "conv-same-stride2-flatten-dense": lambda: _images((3, 10, 10)).add("Conv2D", 5, kernel_size=3, stride=2,
        padding="same", activation="relu").add("Flatten").add("Dense", 6),
    "conv-even-kernel-same": lambda: _images((2, 9, 9)).add("Conv2D", 3, kernel_size=4, stride=2, padding="same")
        .add("Flatten").add("Dense", 4),
    "conv-explicit-padding-dilation-groups": lambda: _images((4, 9, 9)).add("Conv2D", 6, kernel_size=3, padding=2,
        dilation=2, groups=2).add("Conv2D", 6, kernel_size=(1, 3), stride=(1, 2), padding=[0, 1]),
    "maxpool-same-negative": lambda: _images((3, 7, 7)).add("Conv2D", 4, kernel_size=1)
        .add("MaxPool2D", 3, stride=2, padding="same").add("MaxPool2D", 2, padding=1),
    "avgpool-explicit": lambda: _images((3, 8, 8)).add("AvgPool2D", 3, stride=2, padding=1).add("GlobalAvgPool2D"),
    "batchnorm-images-and-features": lambda: _images((3, 6, 6)).add("BatchNorm", momentum=0.2, eps=1e-3)
        .add("Flatten").add("Dense", 5).add("BatchNorm").add("Dropout", 0.4),
    "reshape": lambda: ModelSpec.sequential((24,)).add("Reshape", [4, 6]).add("Conv1D", 3, kernel_size=3,
        padding="same", stride=2).add("Reshape", [-1]).add("Dense", 2),
    "conv1d-layernorm": lambda: _seq((4, 12)).add("Conv1D", 5, kernel_size=3, dilation=2).add("LayerNorm", eps=1e-6),
    "embedding-lstm": lambda: ModelSpec.sequential((9,), dtype="int64").add("Embedding", 6, vocab_size=20)
        .add("LSTM", 5, return_sequences=True).add("LSTM", 4),
    "gru": lambda: _seq().add("GRU", 5, return_sequences=True).add("GRU", 3),
    "self-attention-causal": lambda: _seq((7, 8)).add("MultiHeadAttention", 2, causal=True).add("LayerNorm"),
    "cross-attention": _cross_attention,
    "three-input-attention": _three_input_attention,
    "functional-skip-two-outputs": _functional,
    "attention-padding-mask-causal": _masked_attention,
    "attention-kv-cache": _cached_attention,
    "position-embedding-take-token-tied-head": _tied_language_model,
    "shared-vocabulary-biased-head": _shared_vocabulary,
    "waveform-groupnorm-permute-crop": _waveform,
    "l2-normalize-sequence-and-features": lambda: _seq((4, 6)).add("L2Normalize").add("Flatten").add("Dense", 5)
        .add("L2Normalize", eps=1e-6),
}


def random_inputs(spec: ModelSpec, batch: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for i in spec.inputs:
        shape = (batch, *i.shape)
        if i.dtype == "int64":
            out.append(rng.integers(0, 20, size=shape))
        else:
            out.append(rng.standard_normal(shape).astype(np.float32))
    return out


def randomized_weights(spec: ModelSpec, seed: int = 1):
    """Weights with non-trivial statistics (BatchNorm running mean/variance away from 0/1)."""
    rng = np.random.default_rng(seed)
    out = {}
    for layer, shapes in spec.weight_shapes().items():
        out[layer] = {}
        for name, shape in shapes.items():
            value = rng.standard_normal(shape) * 0.3
            if name == "moving_variance":
                value = rng.uniform(0.5, 2.0, shape)
            out[layer][name] = value.astype(np.float32)
    return out


@pytest.mark.parametrize("case", sorted(SPECS))
def test_same_weights_same_outputs(case):
    spec = SPECS[case]()
    torch_model = get_backend("torch").build(spec, seed=0)
    tf_model = get_backend("tf").build(spec, seed=0)
    weights = randomized_weights(spec)
    torch_model.set_weights(weights)
    tf_model.set_weights(weights)
    inputs = random_inputs(spec, batch=3)
    for a, b, name in zip(torch_model.predict(inputs), tf_model.predict(inputs), spec.outputs):
        assert a.shape == (3, *spec.shapes()[name])
        np.testing.assert_allclose(a, b, atol=1e-5, rtol=0, err_msg=f"{case}: output {name}")
    # and the weights come back out unchanged from both
    for model in (torch_model, tf_model):
        for layer, ws in model.get_weights().items():
            for name, value in ws.items():
                np.testing.assert_array_equal(value, weights[layer][name], err_msg=f"{layer}/{name}")


@pytest.mark.parametrize("source,target", [("torch", "tf"), ("tf", "torch")])
def test_train_save_load_across_frameworks(source, target, digits, tmp_path):
    x_train, y_train, x_test, _ = digits
    images = lambda x: x.reshape(-1, 1, 8, 8)  # noqa: E731
    model = Model(input_shape=(1, 8, 8), output_dim=10, framework=source)
    model.add_layer("Conv2D", 6, kernel_size=3, stride=2, padding="same", activation="relu")
    model.add_layer("BatchNorm").add_layer("Flatten").add_layer("Dropout", 0.2)
    model.add_layer("Dense", 10, activation="softmax")
    model.train(Dataset(images(x_train[:300]), y_train[:300]), Optimizer("Adam", lr=0.01), epochs=2, seed=0)
    model.save(tmp_path / "m.h5")
    other = Model.load(tmp_path / "m.h5", framework=target)
    assert other.framework == target
    np.testing.assert_allclose(other.predict(images(x_test)), model.predict(images(x_test)), atol=1e-5)


def _train_losses(framework: str, spec: ModelSpec, weights, optimizer: Optimizer, x, y, epochs=3, batch=32):
    model = Model(spec=ModelSpec.from_dict(spec.to_dict()), framework=framework).build()
    model.set_weights(weights)
    history = model.train(Dataset(x, y), optimizer, epochs=epochs, batch_size=batch, seed=3)
    return np.array(history["loss"]), model.get_weights()


def _mlp():
    return ModelSpec.sequential((64,)).add("Dense", 32, activation="relu").add("Dense", 10, activation="softmax")


def _bn_cnn():
    return (ModelSpec.sequential((1, 8, 8)).add("Conv2D", 4, kernel_size=3, stride=2, padding="same")
            .add("BatchNorm", momentum=0.3).add("Activation", "relu").add("Flatten").add("Dense", 10, activation="softmax"))


@pytest.mark.parametrize("spec_fn,optimizer,rel", [
    (_mlp, lambda: Optimizer("SGD", lr=0.05), 1e-4),
    (_bn_cnn, lambda: Optimizer("SGD", lr=0.05), 1e-4),
    (_mlp, lambda: Optimizer("Adam", lr=0.002), 1e-3),
    (_mlp, lambda: Optimizer("SGD", lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3, schedule="step",
                             step_size=20, gamma=0.5), 1e-4),
    (_mlp, lambda: Optimizer("Adam", lr=0.002, weight_decay=1e-2, eps=1e-7), 1e-3),
    (_mlp, lambda: Optimizer("AdamW", lr=0.002, weight_decay=0.1, schedule="cosine", warmup_steps=10), 1e-3),
    (_mlp, lambda: Optimizer("RMSprop", lr=0.001, momentum=0.5, weight_decay=1e-3), 1e-3),
], ids=["mlp-sgd", "bn-cnn-sgd", "mlp-adam", "mlp-sgd-nesterov-wd-step", "mlp-adam-l2", "mlp-adamw-cosine",
        "mlp-rmsprop"])
def test_training_parity(spec_fn, optimizer, rel, digits):
    x, y = digits[0][:480], digits[1][:480]
    spec = spec_fn()
    if spec.inputs[0].shape == (1, 8, 8):
        x = x.reshape(-1, 1, 8, 8)
    weights = get_backend("torch").build(spec, seed=0).get_weights()
    torch_losses, torch_weights = _train_losses("torch", spec, weights, optimizer(), x, y)
    tf_losses, tf_weights = _train_losses("tf", spec, weights, optimizer(), x, y)
    np.testing.assert_allclose(tf_losses, torch_losses, rtol=rel)
    assert torch_losses[-1] < torch_losses[0]
    for layer, ws in torch_weights.items():
        for name, value in ws.items():
            np.testing.assert_allclose(tf_weights[layer][name], value, atol=20 * rel, err_msg=f"{layer}/{name}")


def test_optimizer_state_moves_between_frameworks(digits, tmp_path):
    """Adam moments saved from torch resume in TF: the next epoch's loss matches torch's own."""
    x, y = digits[0][:320], digits[1][:320]
    spec = _mlp()
    weights = get_backend("torch").build(spec, seed=0).get_weights()
    opt = Optimizer("Adam", lr=0.003)
    model = Model(spec=ModelSpec.from_dict(spec.to_dict()), framework="torch").build()
    model.set_weights(weights)
    model.train(Dataset(x, y), opt, epochs=1, seed=2)
    model.save(tmp_path / "ckpt.h5")
    model.train(Dataset(x, y), opt, epochs=1, seed=2)                   # epoch 2 (a second call trains more)
    for framework in ("tf", "torch"):
        resumed = Model(spec=ModelSpec.from_dict(spec.to_dict()), framework=framework)
        resumed.train(Dataset(x, y), epochs=2, resume=str(tmp_path / "ckpt.h5"))
        assert resumed.history["loss"][1] == pytest.approx(model.history["loss"][1], rel=1e-4), framework
