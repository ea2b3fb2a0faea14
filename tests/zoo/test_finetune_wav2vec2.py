"""Wav2Vec2 fine-tuned for speech recognition with CTC (issue 13, part 1): ``Dataset(csv,
audio="path", text="transcript", tokenizer=asr)`` reads ``.wav`` clips and pads them per batch; the
loss is ``Wav2Vec2ForCTC(labels=...)``'s (mean reduction, blank = pad id, ``ctc_zero_infinity``);
torch and TensorFlow take the same steps; ``freeze="feature_extractor"`` keeps the convolutions
bit-identical; a repeated clip is learnt; the result saves, loads as Wav2Vec2 and exports; bad
files and transcripts get clear errors."""

from __future__ import annotations

import json
import wave

import numpy as np
import pandas as pd
import pytest

from llmasos import Dataset, Model, Optimizer, export, zoo
from llmasos.audio import read_wav
from llmasos.errors import DataError

from ..conftest import framework_params
from .conftest import assert_trained_alike

pytestmark = pytest.mark.torch  # the reference is transformers' torch model

# no dropout, so a training step equals transformers' eval forward
SMALL = {"vocab_size": 12, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "conv_dim": [16, 16, 16], "conv_kernel": [10, 3, 3], "conv_stride": [5, 2, 2],
         "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "initializer_range": 0.2,
         "hidden_dropout": 0.0, "activation_dropout": 0.0, "attention_dropout": 0.0, "feat_proj_dropout": 0.0,
         "final_dropout": 0.0, "layerdrop": 0.0, "mask_time_prob": 0.0, "ctc_loss_reduction": "mean"}
VOCABULARY = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("EHLOTWD")}}
CLIPS = [(4000, "HELD TOW"), (3000, "TOLD"), (3600, "HOWL"), (2400, "DOT")]


def _write_wav(path, samples: np.ndarray, rate: int = 16000) -> None:
    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(rate)
        file.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


# the large / "lv60" kind: LayerNorm in the feature encoder, pre-LayerNorm Transformer, conv biases;
# its feature extractor gives an attention mask and normalises each clip over its own samples
MASKED = {"feat_extract_norm": "layer", "do_stable_layer_norm": True, "conv_bias": True}


def _folder(path, **options):
    import torch
    import transformers

    path.mkdir()
    torch.manual_seed(0)
    transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**{**SMALL, **options})).save_pretrained(path)
    (path / "vocab.json").write_text(json.dumps(VOCABULARY))
    transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=options.get(
        "feat_extract_norm") == "layer").save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A random Wav2Vec2ForCTC folder and a CSV of four clips of different lengths in clips/."""
    root = tmp_path_factory.mktemp("asr")
    rng = np.random.default_rng(0)
    (root / "clips").mkdir()
    for index, (samples, _) in enumerate(CLIPS):
        _write_wav(root / "clips" / f"{index}.wav", 0.3 * rng.standard_normal(samples))
    pd.DataFrame({"path": [f"clips/{i}.wav" for i in range(len(CLIPS))],
                  "transcript": [text for _, text in CLIPS]}).to_csv(root / "clips.csv", index=False)
    return {"root": root, "csv": root / "clips.csv", "folder": _folder(root / "model"),
            "masked": _folder(root / "masked", **MASKED)}


def _reference(folder, x: dict, labels: np.ndarray | None = None):
    """transformers' Wav2Vec2ForCTC output on a batch (with its attention_mask when given)."""
    import torch
    import transformers

    model = transformers.Wav2Vec2ForCTC.from_pretrained(folder).eval()
    with torch.inference_mode():
        return model(**{k: torch.from_numpy(v) for k, v in x.items()},
                     labels=None if labels is None else torch.from_numpy(labels))


def _reference_loss(folder, x: dict, labels: np.ndarray) -> float:
    return float(_reference(folder, x, labels).loss)


@pytest.mark.parametrize("framework", framework_params())
def test_inputs_labels_and_loss_equal_transformers(framework, data):
    import transformers

    asr = zoo.load("wav2vec2", framework, pretrained=data["folder"])
    clips = Dataset(data["csv"], audio="path", text="transcript", tokenizer=asr, mode="test")
    (x, y), = list(clips.batches(len(CLIPS)))
    waves = [read_wav(data["root"] / "clips" / f"{i}.wav")[0] for i in range(len(CLIPS))]
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(data["folder"])
    np.testing.assert_allclose(x["input_values"], extractor(waves, sampling_rate=16000, padding=True,
                                                            return_tensors="np").input_values, atol=1e-5)
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(data["folder"] / "vocab.json"))
    expected = tokenizer([text for _, text in CLIPS], padding=True, return_tensors="np")
    np.testing.assert_array_equal(y, np.where(expected.attention_mask == 1, expected.input_ids, -100))
    result = asr.evaluate(clips, batch_size=len(CLIPS))
    # CTC sums ~200 frames' log-probabilities (a random model's loss is ~85, where float32 steps
    # are 8e-6): the same to 1e-6 of its size
    assert result["loss"] == pytest.approx(_reference_loss(data["folder"], x, y), rel=1e-6, abs=1e-5)
    # batches are padded to their own longest clip
    assert [x["input_values"].shape[1] for x, _ in clips.batches(2)] == [4000, 3600]


def test_an_impossible_alignment_is_infinite_unless_ctc_zero_infinity(data, tmp_path):
    """A transcript longer than its clip's frames: transformers' loss is inf, or with
    ctc_zero_infinity that sample counts 0 in the batch's mean; ours the same."""
    _write_wav(tmp_path / "short.wav", 0.3 * np.random.default_rng(1).standard_normal(800))  # 39 frames
    # the model takes no attention mask, so every frame of a batch counts: both clips are short
    rows = pd.DataFrame({"path": [str(tmp_path / "short.wav")] * 2, "transcript": ["HELLO TOLD " * 4, "TOLD"]})
    _assert_unalignable_losses(rows, tmp_path, "torch")


def _assert_unalignable_losses(rows: pd.DataFrame, tmp_path, framework: str, **config) -> None:
    """The batch of ``rows`` (one clip too short for its transcript) has transformers' loss: inf,
    and with ctc_zero_infinity a finite one equal to ours."""
    for zero_infinity in (False, True):
        folder = _folder(tmp_path / f"zero-{zero_infinity}", ctc_zero_infinity=zero_infinity, **config)
        asr = zoo.load("wav2vec2", framework, pretrained=folder)
        clips = Dataset(rows, audio="path", text="transcript", tokenizer=asr, mode="test")
        (x, y), = list(clips.batches(2))
        ours, reference = asr.evaluate(clips, batch_size=2)["loss"], _reference_loss(folder, x, y)
        if zero_infinity:
            assert np.isfinite(reference) and reference > 0 and ours == pytest.approx(reference, rel=1e-6, abs=1e-5)
        else:
            assert np.isinf(reference) and np.isinf(ours)


@pytest.mark.tf
@pytest.mark.parametrize("folder", ["folder", pytest.param("masked", marks=pytest.mark.slow)])  # masked: ~70 s loaded
def test_three_adamw_steps_agree_between_torch_and_tensorflow(data, folder):
    weights = {}
    for framework in ("torch", "tf"):
        asr = zoo.load("wav2vec2", framework, pretrained=data[folder])
        clips = Dataset(data["csv"], audio="path", text="transcript", tokenizer=asr, mode="test")
        history = asr.train(clips, Optimizer("AdamW", lr=1e-3), epochs=1, batch_size=2, seed=0)
        asr.train(clips, epochs=1, batch_size=4)
        weights[framework] = (asr.get_weights(), history["loss"][0])
    (torch_w, torch_loss), (tf_w, tf_loss) = weights["torch"], weights["tf"]
    # CTC sums ~200 frames' log-probabilities (~65-84 here), and torch's fused AdamW rounds apart
    # from TensorFlow's: the same to 1e-6 of its size
    assert torch_loss == pytest.approx(tf_loss, rel=1e-6)
    assert_trained_alike(torch_w, tf_w)


@pytest.mark.parametrize("framework", framework_params())
def test_a_frozen_feature_extractor_stays_bit_identical_and_a_repeated_clip_is_learnt(framework, data, tmp_path):
    asr = zoo.load("wav2vec2", framework, pretrained=data["folder"], freeze="feature_extractor")
    before = asr.get_weights()
    # a tenth of a second (79 frames) of noise: CTC leaves its all-blank plateau within ~40 steps
    _write_wav(tmp_path / "clip.wav", 0.3 * np.random.default_rng(2).standard_normal(1600))
    rows = pd.DataFrame({"path": [str(tmp_path / "clip.wav")] * 4, "transcript": ["HOWL TOLD"] * 4})
    clip = Dataset(rows, audio="path", text="transcript", tokenizer=asr)
    start = asr.evaluate(clip)["loss"]
    asr.train(clip, Optimizer("AdamW", lr=3e-3), epochs=60, batch_size=4, seed=0)
    assert asr.evaluate(clip)["loss"] < 0.05 * start
    assert asr.transcribe(str(tmp_path / "clip.wav")) == "HOWL TOLD"
    after = asr.get_weights()
    frozen = asr.layer_groups(asr.spec)["feature_extractor"]
    assert len(frozen) == 4  # three convolutions and the first one's GroupNorm
    for layer in after:
        same = all(np.array_equal(before[layer][n], after[layer][n]) for n in after[layer])
        assert same == (layer in frozen), layer


def test_a_fine_tuned_wav2vec2_saves_loads_as_wav2vec2_and_exports(data, tmp_path):
    asr = zoo.load("wav2vec2", "torch", pretrained=data["folder"])
    clips = Dataset(data["csv"], audio="path", text="transcript", tokenizer=asr, mode="test")
    asr.train(clips, Optimizer("AdamW", lr=1e-3), epochs=2, batch_size=4, seed=0)
    trained = asr.evaluate(clips)
    asr.save(tmp_path / "tuned.h5")
    loaded = Model.load(tmp_path / "tuned.h5")
    assert type(loaded).__name__ == "Wav2Vec2" and loaded.tokenizer is not None
    again = Dataset(data["csv"], audio="path", text="transcript", tokenizer=loaded, mode="test")
    assert loaded.evaluate(again)["loss"] == pytest.approx(trained["loss"], abs=1e-6)
    export.to_onnx(loaded, tmp_path / "tuned.onnx")   # verified against the model by the export itself
    import onnxruntime

    x, _ = clips.arrays()
    session = onnxruntime.InferenceSession(str(tmp_path / "tuned.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, x)[0], asr.predict(x["input_values"]), atol=1e-4)


def test_bad_clips_and_transcripts_get_clear_errors(data, tmp_path):
    asr = zoo.load("wav2vec2", "torch", pretrained=data["folder"])
    clip = str(data["root"] / "clips" / "1.wav")

    def rows(paths, texts):
        return pd.DataFrame({"path": paths, "transcript": texts})
    with pytest.raises(DataError, match=r"row 1's audio file .*missing.wav does not exist"):
        Dataset(rows([clip, "missing.wav"], ["TOLD", "DOT"]), audio="path", text="transcript", tokenizer=asr)
    with pytest.raises(DataError, match=r"transcript 1 is '', not a non-empty string|transcript 1 is nan"):
        Dataset(rows([clip, clip], ["TOLD", ""]), audio="path", text="transcript", tokenizer=asr)
    with pytest.raises(DataError, match=r"no column 'text'; columns: 'path', 'transcript'"):
        Dataset(data["csv"], audio="path", text="text", tokenizer=asr)
    with pytest.raises(DataError, match=r"characters the CTC vocabulary lacks: 'dlot'.*upper-case the transcripts"):
        Dataset(rows([clip], ["told DOT"]), audio="path", text="transcript", tokenizer=asr)
    _write_wav(tmp_path / "8k.wav", np.zeros(800), rate=8000)
    with pytest.raises(DataError, match=r"row 0: audio sampled at 8000 Hz; this model takes 16000 Hz. Resample"):
        Dataset(rows([str(tmp_path / "8k.wav")], ["DOT"]), audio="path", text="transcript", tokenizer=asr)
    (tmp_path / "noise.wav").write_bytes(b"not a wave file")
    with pytest.raises(DataError, match=r"row 0: .*noise.wav: not a readable PCM .wav file"):
        Dataset(rows([str(tmp_path / "noise.wav")], ["DOT"]), audio="path", text="transcript", tokenizer=asr)
    with pytest.raises(DataError, match="needs tokenizer= a zoo speech model"):
        Dataset(data["csv"], audio="path", text="transcript", tokenizer=str(data["folder"] / "vocab.json"))


def _frames(folder, samples) -> list[int]:
    """transformers' frame count for clips of ``samples``."""
    import torch
    import transformers

    model = transformers.Wav2Vec2ForCTC.from_pretrained(folder)
    return model._get_feat_extract_output_lengths(torch.tensor(samples)).tolist()


@pytest.mark.parametrize("framework", framework_params())
def test_a_masked_model_gives_each_clip_of_a_padded_batch_its_own_logits_and_transformers_loss(framework, data):
    """feat_extract_norm="layer": the batch carries attention_mask; every clip's logits equal its
    logits alone and transformers' Wav2Vec2ForCTC(attention_mask=) (1e-4), padding frames decode
    to nothing, and the loss is Wav2Vec2ForCTC(labels=, attention_mask=)'s."""
    import transformers

    asr = zoo.load("wav2vec2", framework, pretrained=data["masked"])
    assert [i.name for i in asr.spec.inputs] == ["input_values", "attention_mask"]
    clips = Dataset(data["csv"], audio="path", text="transcript", tokenizer=asr, mode="test")
    (x, y), = list(clips.batches(len(CLIPS)))
    waves = [read_wav(data["root"] / "clips" / f"{i}.wav")[0] for i in range(len(CLIPS))]
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(data["masked"])
    features = extractor(waves, sampling_rate=16000, padding=True, return_tensors="np")
    np.testing.assert_allclose(x["input_values"], features.input_values, atol=1e-5)
    np.testing.assert_array_equal(x["attention_mask"], features.attention_mask)
    logits = asr.predict(x)
    reference = _reference(data["masked"], x, y)
    frames = _frames(data["masked"], [n for n, _ in CLIPS])
    assert len(set(frames)) == len(CLIPS) and logits.shape[1] == max(frames)  # every clip but one is padded
    for row, (count, wave_) in enumerate(zip(frames, waves)):
        alone = asr.predict(asr.speech_inputs([wave_]))[0]
        assert alone.shape[0] == count
        np.testing.assert_allclose(logits[row, :count], alone, atol=1e-4, err_msg=f"clip {row}")
        np.testing.assert_allclose(logits[row, :count], reference.logits[row, :count].numpy(), atol=1e-4)
        assert (logits[row, count:].argmax(-1) == 0).all()  # padding is the blank
    assert asr.transcribe(waves) == [asr.transcribe(w) for w in waves]
    result = asr.evaluate(clips, batch_size=len(CLIPS))
    assert np.isfinite(float(reference.loss))
    assert result["loss"] == pytest.approx(float(reference.loss), rel=1e-6, abs=1e-5)
    # without a mask (transformers' forward without one) the padded clips' logits would differ
    unmasked = asr.predict(x["input_values"])
    assert np.abs(unmasked[-1, :frames[-1]] - logits[-1, :frames[-1]]).max() > 1e-3


@pytest.mark.parametrize("framework", framework_params())
def test_a_masked_clip_too_short_for_its_transcript_is_infinite_unless_ctc_zero_infinity(framework, data, tmp_path):
    """The short clip has frames enough for its transcript only when its padding counts: with the
    mask it cannot be aligned, as in transformers (inf, or 0 with ctc_zero_infinity)."""
    _write_wav(tmp_path / "short.wav", 0.3 * np.random.default_rng(1).standard_normal(800))   # 39 frames
    _write_wav(tmp_path / "long.wav", 0.3 * np.random.default_rng(3).standard_normal(4000))   # 199 frames
    rows = pd.DataFrame({"path": [str(tmp_path / "long.wav"), str(tmp_path / "short.wav")],
                         "transcript": ["TOLD", "HELLO TOLD " * 4]})
    _assert_unalignable_losses(rows, tmp_path, framework, **MASKED)


@pytest.mark.slow  # the export and its verification: ~2 min on a loaded 2-core machine
def test_a_masked_model_exports_with_its_mask_and_transcribes_padded_batches_in_onnx_runtime(data, tmp_path):
    import onnxruntime

    from .conftest import onnx_signature

    asr = zoo.load("wav2vec2", "torch", pretrained=data["masked"])
    export.to_onnx(asr, tmp_path / "masked.onnx")
    signature = onnx_signature(tmp_path / "masked.onnx")
    assert signature["attention_mask"][0] == "INT64"
    assert signature["attention_mask"][1] == signature["input_values"][1]  # (batch, samples), both dynamic
    waves = [read_wav(data["root"] / "clips" / f"{i}.wav")[0] for i in range(len(CLIPS))]
    feeds = asr.speech_inputs(waves)
    session = onnxruntime.InferenceSession(str(tmp_path / "masked.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, feeds)[0], asr.predict(feeds), atol=1e-4)
    assert asr.transcribe(waves, session=session) == asr.transcribe(waves)
    # the stream feeds one window at a time, every sample counting
    stream = asr.stream(0.2, 0.1, 0.05, session=str(tmp_path / "masked.onnx"))
    events = stream.feed(waves[0]) + stream.finish()
    in_process = asr.stream(0.2, 0.1, 0.05)
    assert events == in_process.feed(waves[0]) + in_process.finish()
