"""GPT-2 fine-tuned as a causal language model (issue 13, part 3): ``Dataset(lines, text=0,
tokenizer=gpt, task="causal-lm")`` trains with GPT2LMHeadModel(labels=...)'s loss, batches of texts
of different lengths are padded per batch (padding left out of the loss), torch and TensorFlow
take the same steps, evaluate() reports perplexity, and the result saves, loads and exports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmasos import Dataset, Model, Optimizer, export, zoo
from llmasos.errors import DataError

from ..conftest import framework_params

# no dropout, so the framework's training step is deterministic and equals transformers' eval forward
GPT2 = {"vocab_size": 100, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 16, "initializer_range": 0.3,
        "bos_token_id": 97, "eos_token_id": 99, "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}
WORDS = [f"w{i}" for i in range(97)] + ["Hello", "[UNK]", "<eos>"]
LINES = ["w1 w2 w3 w4 w5 w6 w7", "Hello w9", "w10 w11 w12 w13", "w3 w3 w3 w3 w3 w3 w3 w3 w3 w3", "w50 w60 w70"]


def _tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return tokenizer


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A random transformers GPT2LMHeadModel saved as a Hugging Face folder with a tokenizer."""
    import torch
    import transformers

    path = tmp_path_factory.mktemp("gpt2")
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).save_pretrained(path)
    _tokenizer().save(str(path / "tokenizer.json"))
    return path


def _reference_loss(folder, batch: dict, labels: np.ndarray) -> float:
    import torch
    import transformers

    model = transformers.GPT2LMHeadModel.from_pretrained(folder).eval()
    with torch.inference_mode():
        out = model(input_ids=torch.from_numpy(batch["input_ids"]),
                    attention_mask=torch.from_numpy((labels != -100).astype(np.int64)), labels=torch.from_numpy(labels))
    return float(out.loss)


@pytest.mark.torch
@pytest.mark.parametrize("framework", framework_params())
def test_the_causal_lm_loss_equals_transformers_on_a_padded_batch(framework, folder):
    gpt = zoo.load("gpt2", framework, pretrained=folder)
    lines = Dataset(LINES, text=0, tokenizer=gpt, task="causal-lm", mode="test")
    (x, y), = list(lines.batches(len(LINES)))
    assert x["input_ids"].shape == (5, 10) and (y == -100).sum() == 50 - sum(len(t.split()) for t in LINES)
    expected = _reference_loss(folder, x, y)
    result = gpt.evaluate(lines, batch_size=len(LINES))
    assert sorted(result) == ["loss", "perplexity"]
    assert abs(result["loss"] - expected) <= 1e-5
    assert abs(result["perplexity"] - math.exp(expected)) <= 1e-4 * math.exp(expected)


@pytest.mark.torch
@pytest.mark.tf
def test_three_adamw_steps_agree_between_torch_and_tensorflow(folder):
    """Three optimizer steps on per-batch-padded batches (widths 7 and 10) from the same weights."""
    weights = {}
    for framework in ("torch", "tf"):
        gpt = zoo.load("gpt2", framework, pretrained=folder)
        lines = Dataset(LINES[:4], text=0, tokenizer=gpt, task="causal-lm", mode="test")
        history = gpt.train(lines, Optimizer("AdamW", lr=1e-2), epochs=1, batch_size=3, seed=0)
        gpt.train(Dataset(LINES[2:], text=0, tokenizer=gpt, task="causal-lm", mode="test"), epochs=2, batch_size=3)
        weights[framework] = (gpt.get_weights(), history["loss"][0], history["perplexity"][0])
    (torch_w, torch_loss, torch_ppl), (tf_w, tf_loss, tf_ppl) = weights["torch"], weights["tf"]
    assert abs(torch_loss - tf_loss) <= 1e-5 and abs(torch_ppl - tf_ppl) <= 1e-4 * torch_ppl
    for layer, values in torch_w.items():
        for name, value in values.items():
            if layer.endswith("attn.key") and name == "bias":
                # softmax ignores what a key bias adds (the same q.b for every key): its true gradient
                # is 0, and Adam scales each framework's rounding noise up to steps of about lr
                continue
            np.testing.assert_allclose(tf_w[layer][name], value, atol=1e-4, err_msg=f"{layer}.{name}")
    original = zoo.load("gpt2", "torch", pretrained=folder).get_weights()
    changed = sum(not np.allclose(original[layer][name], value) for layer, values in torch_w.items()
                  for name, value in values.items())
    assert changed > 20  # every weight trained, not just a few


@pytest.mark.parametrize("framework", framework_params())
def test_a_repeated_text_is_learnt(framework, folder):
    gpt = zoo.load("gpt2", framework, pretrained=folder)
    text = Dataset(["Hello w5 w17 w42 w8 w77"] * 4, text=0, tokenizer=gpt, task="causal-lm")
    before = gpt.evaluate(text)["loss"]
    gpt.train(text, Optimizer("AdamW", lr=1e-2), epochs=15, batch_size=4, seed=0)
    after = gpt.evaluate(text)
    assert before > 3.0 and after["loss"] < 0.1 * before and after["perplexity"] < 1.5
    # what it learnt, it generates
    assert gpt.generate("Hello w5", max_new_tokens=4) == "Hello w5 w17 w42 w8 w77"


@pytest.mark.torch
def test_a_fine_tuned_gpt2_saves_loads_as_gpt2_and_exports(folder, tmp_path):
    gpt = zoo.load("gpt2", "torch", pretrained=folder)
    lines = Dataset(LINES, text=0, tokenizer=gpt, task="causal-lm", mode="test")
    gpt.train(lines, Optimizer("AdamW", lr=1e-2), epochs=2, batch_size=5, seed=0)
    trained = gpt.evaluate(lines)
    gpt.save(tmp_path / "tuned.h5")
    loaded = Model.load(tmp_path / "tuned.h5")
    assert type(loaded).__name__ == "GPT2" and loaded.tokenizer is not None
    assert loaded.evaluate(Dataset(LINES, text=0, tokenizer=loaded, task="causal-lm"))["loss"] == \
        pytest.approx(trained["loss"], abs=1e-6)
    export.to_onnx(loaded, tmp_path / "tuned.onnx")   # verified against the model by the export itself
    import onnxruntime

    ids = lines.arrays()[0]["input_ids"]
    session = onnxruntime.InferenceSession(str(tmp_path / "tuned.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"input_ids": ids})[0], gpt.predict(ids), atol=1e-4)


@pytest.mark.torch
def test_prompts_of_different_lengths_are_generated_as_one_batch(folder):
    gpt = zoo.load("gpt2", "torch", pretrained=folder)
    prompts = ["w3", "Hello w5 w17", "w8 w9"]
    calls = []
    run = gpt.compiled.predict
    gpt.compiled.predict = lambda inputs: calls.append(inputs[0].shape) or run(inputs)
    batched = gpt.generate(prompts, max_new_tokens=5)
    gpt.compiled.predict = run
    assert batched == [gpt.generate(prompt, max_new_tokens=5) for prompt in prompts]
    assert len(calls) == 5 and all(shape[0] == 3 for shape in calls)  # one batch of three per new token


def test_batches_are_padded_to_their_own_longest_text_and_buckets_group_lengths():
    lines = [" ".join(["w1"] * n) for n in (1, 9, 2, 8, 1, 9, 2, 8)]
    plain = Dataset(lines, text=0, tokenizer=_tokenizer(), task="causal-lm", mode="test")
    assert [x["input_ids"].shape[1] for x, _ in plain.batches(2)] == [9, 8, 9, 8]
    assert plain.arrays()[0]["input_ids"].shape == (8, 9)
    bucketed = Dataset(lines, text=0, tokenizer=_tokenizer(), task="causal-lm", bucket=True)
    batches = list(bucketed.batches(2, shuffle=True, seed=0))
    assert sorted(x["input_ids"].shape[1] for x, _ in batches) == [1, 2, 8, 9]
    # every text once, its labels its own ids with -100 after its end
    counted = sorted(int((y != -100).sum(axis=1)[i]) for _, y in batches for i in range(len(y)))
    assert counted == sorted(len(line.split()) for line in lines)
    # the same seed and epoch, the same batches; unshuffled reading keeps the order
    again = list(bucketed.batches(2, shuffle=True, seed=0))
    assert all(np.array_equal(a[0]["input_ids"], b[0]["input_ids"]) for a, b in zip(batches, again))
    assert [x["input_ids"].shape[1] for x, _ in bucketed.batches(2)] == [9, 8, 9, 8]


@pytest.mark.torch
def test_long_texts_are_refused_unless_truncated_and_labels_are_not_given(folder):
    gpt = zoo.load("gpt2", "torch", pretrained=folder)
    long = " ".join(["w1"] * 20)
    with pytest.raises(DataError, match=r"text 1 has 20 tokens; the model takes at most 16 \(truncation=True"):
        Dataset(["w2", long], text=0, tokenizer=gpt, task="causal-lm")
    cut = Dataset(["w2", long], text=0, tokenizer=gpt, task="causal-lm", truncation=True)
    assert cut.arrays()[0]["input_ids"].shape == (2, 16)
    with pytest.raises(DataError, match="takes no labels"):
        Dataset(["w2"], [1], text=0, tokenizer=gpt, task="causal-lm")
    with pytest.raises(DataError, match="task must be one of"):
        Dataset(["w2"], text=0, tokenizer=gpt, task="lm")
