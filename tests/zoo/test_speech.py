"""Wav2Vec2 against transformers' ``Wav2Vec2ForCTC`` with identical weights (a Hugging Face folder
the tests write with ``save_pretrained``, with its feature extractor and CTC vocabulary), in torch,
TensorFlow and ONNX Runtime; greedy CTC text as transformers' tokenizer decodes it; bad audio."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from llmasos import export, zoo
from llmasos.errors import DataError
from llmasos.audio import CTCVocabulary
from llmasos.zoo.wav2vec2 import fold_weight_norm

from ..conftest import framework_params

pytestmark = pytest.mark.torch  # the reference is transformers' torch model

ATOL = 1e-4
SMALL = {"vocab_size": 12, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "conv_dim": [16, 16, 16], "conv_kernel": [10, 3, 3], "conv_stride": [5, 2, 2],
         "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "initializer_range": 0.2}
VARIANTS = {"base": {}, "stable": {"feat_extract_norm": "layer", "do_stable_layer_norm": True,
                                   "num_conv_pos_embeddings": 15}}  # an odd kernel: nothing to crop
VOCABULARY = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("EHLOTWD")}}


def _waves(rng: np.random.Generator) -> list[np.ndarray]:
    """Two waveforms of different lengths (the shorter is padded), louder than unit scale."""
    return [3.0 * rng.standard_normal(4000).astype(np.float32), 0.5 + rng.standard_normal(3000).astype(np.float32)]


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """Per variant: a random ``Wav2Vec2ForCTC`` (weight norm and norms perturbed, so a wrong
    mapping cannot hide behind their initial values) saved with its processor files, and its
    logits and decoded texts on two waveforms."""
    import json

    import torch
    import transformers

    out = {"waves": _waves(np.random.default_rng(0))}
    for variant, options in VARIANTS.items():
        folder = tmp_path_factory.mktemp(variant)
        torch.manual_seed(0)
        model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**{**SMALL, **options})).eval()
        with torch.no_grad():
            for name, param in model.named_parameters():
                if "norm" in name or "original0" in name or "weight_g" in name:
                    param.mul_(torch.empty_like(param).uniform_(0.5, 1.5)).add_(0.05 * torch.randn_like(param))
        model.save_pretrained(folder)
        (folder / "vocab.json").write_text(json.dumps(VOCABULARY))
        tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"))
        tokenizer.save_pretrained(folder)
        extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
        extractor.save_pretrained(folder)
        values = extractor(out["waves"], sampling_rate=16000, padding=True, return_tensors="pt").input_values
        with torch.inference_mode():
            logits = model(values).logits
        out[variant] = {"folder": folder, "logits": logits.numpy(),
                        "texts": tokenizer.batch_decode(logits.argmax(-1)), "model": model}
    return out


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("framework", framework_params())
def test_logits_and_text_match_transformers(framework, variant, hf):
    reference = hf[variant]
    asr = zoo.load("wav2vec2", framework, pretrained=reference["folder"])
    np.testing.assert_allclose(asr.predict(asr.input_values(hf["waves"])), reference["logits"], atol=ATOL, rtol=0)
    assert asr.transcribe(hf["waves"]) == reference["texts"]
    assert all(len(text) > 3 for text in reference["texts"])  # the decoding had something to do


@pytest.mark.parametrize("framework", framework_params())
def test_onnx_export_transcribes_the_same(framework, hf, tmp_path):
    reference = hf["base"]
    asr = zoo.load("wav2vec2", framework, pretrained=reference["folder"])
    report = export.to_onnx(asr, tmp_path / "asr.onnx")
    assert [t["name"] for t in report.outputs] == ["logits"]
    from llmasos.export import load

    session = load(tmp_path / "asr.onnx")
    values = asr.input_values(hf["waves"])
    np.testing.assert_allclose(session.run(None, {"input_values": values})[0], reference["logits"], atol=ATOL, rtol=0)
    assert asr.transcribe(hf["waves"], session=session) == reference["texts"]
    # the waveform length is dynamic in the file: one second, not the exported example's length
    one_second = np.random.default_rng(3).standard_normal(16000).astype(np.float32)
    assert asr.transcribe(one_second, session=session) == asr.transcribe(one_second)


def test_old_weight_norm_names_are_folded_the_same(hf, tmp_path):
    """``weight_g``/``weight_v`` (torch's old weight_norm) in a pytorch_model.bin give the same model."""
    import shutil

    import torch

    reference = hf["base"]
    folder = tmp_path / "old"
    shutil.copytree(reference["folder"], folder)
    (folder / "model.safetensors").unlink()
    state = {key.replace("parametrizations.weight.original0", "weight_g")
                .replace("parametrizations.weight.original1", "weight_v"): value
             for key, value in reference["model"].state_dict().items()}
    torch.save(state, folder / "pytorch_model.bin")
    asr = zoo.load("wav2vec2", "torch", pretrained=folder)
    np.testing.assert_allclose(asr.predict(asr.input_values(hf["waves"])), reference["logits"], atol=ATOL, rtol=0)


def test_fold_weight_norm_matches_torch():
    import torch

    conv = torch.nn.utils.parametrizations.weight_norm(torch.nn.Conv1d(8, 8, 5, groups=2), dim=2)
    with torch.no_grad():
        conv.parametrizations.weight.original0.uniform_(0.5, 2.0)
    g = conv.parametrizations.weight.original0.detach().numpy()
    v = conv.parametrizations.weight.original1.detach().numpy()
    np.testing.assert_allclose(fold_weight_norm(g, v), conv.weight.detach().numpy(), rtol=1e-6, atol=1e-7)


def test_a_wav_file_transcribes_like_its_samples(hf, tmp_path):
    asr = zoo.load("wav2vec2", "torch", pretrained=hf["base"]["folder"])
    pcm = np.clip(hf["waves"][1] / 4, -1, 1)
    samples = (pcm * 32767).astype(np.int16)
    with wave.open(str(tmp_path / "speech.wav"), "wb") as file:
        file.setnchannels(1), file.setsampwidth(2), file.setframerate(16000)
        file.writeframes(samples.tobytes())
    assert asr.transcribe(tmp_path / "speech.wav") == asr.transcribe(samples / 32768.0)


def test_ctc_vocabulary_decodes_like_transformers(hf):
    import transformers

    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(hf["base"]["folder"] / "vocab.json"))
    vocabulary = CTCVocabulary.from_folder(hf["base"]["folder"])
    rng = np.random.default_rng(5)
    for _ in range(20):
        ids = rng.integers(0, len(VOCABULARY), 30)
        assert vocabulary.decode(ids) == tokenizer.decode(ids)


@pytest.mark.parametrize("speech, rate, message", [
    (np.zeros(30, np.float32), 16000, r"a waveform of 30 samples is shorter than the 40 samples \(2 ms\)"),
    (np.zeros(8000, np.float32), 8000, r"sampled at 8000 Hz; this model takes 16000 Hz. Resample"),
    (np.full(8000, np.nan, np.float32), 16000, r"NaN or infinite"),
    (np.zeros((2, 8000), np.float32), 16000, r"a waveform is a non-empty 1-D array"),
    ("missing.wav", None, r"not a readable PCM .wav file"),
    ([], 16000, r"a waveform is a non-empty 1-D array of samples, got shape \(0,\)"),
])
def test_bad_audio_says_what_is_wrong(hf, speech, rate, message):
    asr = zoo.load("wav2vec2", "torch", pretrained=hf["base"]["folder"])
    with pytest.raises(DataError, match=message):
        asr.transcribe(speech, sampling_rate=rate)


def test_without_a_vocabulary_transcribe_says_how_to_get_one():
    asr = zoo.load("wav2vec2", "torch", config=SMALL)
    with pytest.raises(DataError, match=r"no CTC vocabulary: load it from a folder holding vocab.json"):
        asr.transcribe(np.zeros(16000, np.float32))


def test_pretrained_true_finds_the_standard_repo_in_the_hugging_face_cache(hf, tmp_path, monkeypatch):
    """``pretrained=True`` is facebook/wav2vec2-base-960h from $HF_HOME/hub, vocabulary and all;
    with an empty cache the error names that folder."""
    import shutil

    from llmasos.errors import WeightsNotFoundError

    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    repo = tmp_path / "hf" / "hub" / "models--facebook--wav2vec2-base-960h"
    with pytest.raises(WeightsNotFoundError, match=r"facebook/wav2vec2-base-960h.*models--facebook--wav2vec2"):
        zoo.load("wav2vec2", "torch", pretrained=True)
    shutil.copytree(hf["base"]["folder"], repo / "snapshots" / "abc123")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("abc123")
    asr = zoo.load("wav2vec2", "torch", pretrained=True)
    assert asr.transcribe(hf["waves"]) == hf["base"]["texts"]


def test_a_model_that_expects_an_attention_mask_transcribes_each_waveform_alone(hf, tmp_path):
    """return_attention_mask=True (the large "layer" models): no padding reaches the model; each
    text is what transformers gives for that waveform with its mask."""
    import json
    import shutil

    import torch
    import transformers

    reference = hf["stable"]
    folder = tmp_path / "masked"
    shutil.copytree(reference["folder"], folder)
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    (folder / "preprocessor_config.json").write_text(json.dumps({**settings, "return_attention_mask": True}))
    extractor = transformers.Wav2Vec2FeatureExtractor.from_pretrained(folder)
    tokenizer = transformers.Wav2Vec2CTCTokenizer.from_pretrained(folder)
    want = []
    for wave_ in hf["waves"]:
        features = extractor(wave_, sampling_rate=16000, return_tensors="pt")
        with torch.inference_mode():
            logits = reference["model"](features.input_values, attention_mask=features.attention_mask).logits
        want.append(tokenizer.decode(logits[0].argmax(-1)))
    asr = zoo.load("wav2vec2", "torch", pretrained=folder)
    assert asr.transcribe(hf["waves"]) == want
