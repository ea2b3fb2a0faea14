"""Streaming speech-to-text (:mod:`llmasos.zoo.streaming`) against transformers' ASR pipeline with
chunking, on a random ``Wav2Vec2ForCTC`` saved as a Hugging Face folder: the same text for the same
chunk/stride settings; the same events whatever sizes the audio is fed in; the same from ONNX
Runtime as from torch and TensorFlow; utterances cut at pauses; bad audio and settings refused."""

from __future__ import annotations

import json

import numpy as np
import pytest

from llmasos import export, zoo
from llmasos.errors import DataError
from llmasos.audio import CTCVocabulary
from llmasos.zoo.streaming import ChunkPlan, CTCSpeech, _Utterances, chunk_spans, transcribe_chunked

from ..conftest import framework_params

pytestmark = pytest.mark.torch  # the reference is transformers' torch model and pipeline

RATE = 16000
SMALL = {"vocab_size": 12, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "conv_dim": [16, 16, 16], "conv_kernel": [10, 3, 3], "conv_stride": [5, 2, 2],
         "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4, "initializer_range": 0.2}
VOCABULARY = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("EHLOTWD")}}
# (chunk_s, left_s, right_s): frames are 20 samples here, so these are 400, 80 and 40 frames
SETTINGS = [(0.5, 0.1, 0.05), (0.3, 0.05, 0.0)]
ENDPOINT_S = 0.01
# 25,600 samples leave a short last window; 24,800 end exactly where a full window ends
LENGTHS = (25_600, 24_800)
PIECE_S = (0.02, 0.05, 0.13, 0.5, 1.1, 2.0)


@pytest.fixture(scope="module")
def hf(tmp_path_factory):
    """A random ``Wav2Vec2ForCTC`` whose blank is favoured (an lm_head bias: a blank wins ~80% of
    frames, so there are pauses to end utterances at), saved with its processor files; the
    transformers pipeline on it, and a recording with a silent stretch."""
    import torch
    import transformers

    folder = tmp_path_factory.mktemp("w2v")
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(transformers.Wav2Vec2Config(**SMALL)).eval()
    rng = np.random.default_rng(0)
    speech = (0.3 * rng.standard_normal(max(LENGTHS))).astype(np.float32)
    speech[9000:13000] = 0.0
    with torch.inference_mode():
        logits = model(torch.from_numpy(speech[None])).logits[0].numpy()
        margin = np.delete(logits, 0, axis=1).max(axis=1) - logits[:, 0]
        model.lm_head.bias[0] += float(np.quantile(margin, 0.8))
    model.save_pretrained(folder)
    (folder / "vocab.json").write_text(json.dumps(VOCABULARY))
    tokenizer = transformers.Wav2Vec2CTCTokenizer(str(folder / "vocab.json"))
    tokenizer.save_pretrained(folder)
    extractor = transformers.Wav2Vec2FeatureExtractor(do_normalize=True, return_attention_mask=False)
    extractor.save_pretrained(folder)
    pipe = transformers.pipeline("automatic-speech-recognition", model=model, tokenizer=tokenizer,
                                 feature_extractor=extractor, device="cpu")
    return {"folder": folder, "pipeline": pipe, "speech": speech}


@pytest.fixture(scope="module")
def asr(hf):
    return zoo.load("wav2vec2", "torch", pretrained=hf["folder"])


def _events(stream, speech: np.ndarray, piece: int) -> list[dict]:
    events = []
    for start in range(0, len(speech), piece):
        events += stream.feed(speech[start:start + piece])
    return events + stream.finish()


@pytest.mark.parametrize("length", LENGTHS)
@pytest.mark.parametrize("chunk_s, left_s, right_s", SETTINGS)
def test_text_equals_the_transformers_pipeline(hf, asr, chunk_s, left_s, right_s, length):
    speech = hf["speech"][:length]
    want = hf["pipeline"](speech.copy(), chunk_length_s=chunk_s, stride_length_s=(left_s, right_s))["text"]
    plan = ChunkPlan.from_seconds(chunk_s, left_s, right_s, frame_stride=20)
    assert transcribe_chunked(asr.predict, CTCSpeech.of(asr), speech, plan) == want
    stream = asr.stream(chunk_s, left_s, right_s, endpoint_s=ENDPOINT_S)
    _events(stream, speech, RATE // 10)
    assert stream.text == want
    assert len(want) > 20 and "  " not in want  # the model wrote something, not only pauses
    # not the whole-recording text: chunking changes it, so the equality above says something
    assert asr.transcribe(speech) != want


@pytest.mark.parametrize("length", LENGTHS)
def test_any_piece_size_gives_the_same_events_as_one_piece(asr, hf, length):
    speech = hf["speech"][:length]
    whole = _events(asr.stream(*SETTINGS[0], endpoint_s=ENDPOINT_S), speech, length)
    finals = [e for e in whole if "final" in e]
    assert len(finals) >= 3 and any("partial" in e for e in whole)
    # utterances in order, in time, inside the recording
    ends = [(e["start"], e["end"]) for e in finals]
    assert all(0 <= s < e <= length / RATE for s, e in ends) and ends == sorted(ends)
    for seconds in PIECE_S:
        stream = asr.stream(*SETTINGS[0], endpoint_s=ENDPOINT_S)
        assert _events(stream, speech, int(seconds * RATE)) == whole, seconds
    # pieces of ragged sizes, int16 as a microphone gives them
    pcm = np.round(speech * 32767).astype(np.int16)
    rng, start, events = np.random.default_rng(1), 0, []
    stream = asr.stream(*SETTINGS[0], endpoint_s=ENDPOINT_S)
    while start < length:
        size = int(rng.integers(1, 2 * RATE // 10))
        events += stream.feed(pcm[start:start + size])
        start += size
    assert events + stream.finish() == _events(asr.stream(*SETTINGS[0], endpoint_s=ENDPOINT_S), pcm / 32768.0, length)


@pytest.mark.parametrize("framework", framework_params())
def test_onnx_streams_as_the_framework_does(framework, hf, tmp_path):
    model = zoo.load("wav2vec2", framework, pretrained=hf["folder"])
    export.to_onnx(model, tmp_path / "asr.onnx")
    speech = hf["speech"][:LENGTHS[0]]
    from_model = _events(model.stream(*SETTINGS[0], endpoint_s=ENDPOINT_S), speech, 3000)
    from_onnx = _events(model.stream(*SETTINGS[0], endpoint_s=ENDPOINT_S, session=tmp_path / "asr.onnx"), speech,
                        3000)
    assert from_onnx == from_model and len(from_model) > 3
    assert export.info(tmp_path / "asr.onnx")["llmasos.ctc"] == CTCSpeech.of(model).to_json()


def test_utterances_end_at_pauses_of_blanks_and_word_delimiters():
    vocabulary = CTCVocabulary(VOCABULARY)
    utterances = _Utterances(vocabulary, endpoint=3)
    e, h, pause, space = VOCABULARY["E"], VOCABULARY["H"], 0, VOCABULARY["|"]
    ids = np.array([pause, h, h, pause, e, space, pause, pause, e, pause, pause, space, h])
    events = utterances.add(ids, 0.02 * np.arange(len(ids)), 0.02)
    # HE then a pause of 3 (| and two blanks): final; E, then blank blank | : final; H under way
    assert events == [{"final": "HE", "start": 0.02, "end": 0.1}, {"final": "E", "start": 0.16, "end": 0.18},
                      {"partial": "H"}]
    assert utterances.close(0.02) == [{"final": "H", "start": 0.24, "end": 0.26}]
    assert utterances.text == vocabulary.decode(ids) == "HE E H"


def test_chunk_spans_are_the_pipeline_chunks():
    from transformers.pipelines.automatic_speech_recognition import chunk_iter

    class Extractor:  # chunk_iter calls the feature extractor: hand back the window itself
        sampling_rate = RATE

        def __call__(self, chunk, **_):
            return {"window": chunk}

    plan = ChunkPlan.from_seconds(0.5, 0.1, 0.05, frame_stride=20)
    for total in (1, 1600, 1601, 7999, 8000, 8001, 13600, 13601, 25600):
        want = [(int(c["window"][0]), int(c["window"][0]) + c["stride"][0], c["stride"][1], c["stride"][2])
                for c in chunk_iter(np.arange(total), Extractor(), plan.chunk, plan.left, plan.right)]
        assert [(s.start, s.end, s.left, s.right) for s in chunk_spans(total, plan)] == want, total


@pytest.mark.parametrize("make, message", [
    (lambda asr: asr.stream(sampling_rate=8000), r"sampled at 8000 Hz; this model takes 16000 Hz. Resample"),
    (lambda asr: asr.stream(0.5, 0.25, 0.25), r"chunk_s=0.5 must be longer than left_s \+ right_s = 0.5"),
    (lambda asr: asr.stream(1.0, -0.1, 0.2), r"left_s must be a number of seconds >= 0, got -0.1"),
    (lambda asr: asr.stream(endpoint_s=0), r"endpoint_s must be a positive number of seconds, got 0"),
    (lambda asr: asr.stream().feed(np.zeros((800, 2), np.float32)), r"mono audio as a 1-D array.*shape \(800, 2\).*"
                                                                     r"stereo, pass one channel"),
    (lambda asr: asr.stream().feed(np.zeros(800, np.int32)), r"float \(in \[-1, 1\]\) or int16, got int32"),
    (lambda asr: asr.stream().feed(np.full(800, np.nan, np.float32)), r"NaN or infinite"),
    (lambda asr: asr.stream().finish(), r"the stream got no audio; one frame of this model needs 40 samples"),
    (lambda asr: (s := asr.stream(), s.feed(np.zeros(30, np.float32)), s.finish()),
     r"the stream got 30 samples; one frame of this model needs 40"),
])
def test_bad_audio_and_settings_say_what_is_wrong(asr, make, message):
    with pytest.raises(DataError, match=message):
        make(asr)


def test_a_finished_stream_takes_no_more_audio(asr):
    stream = asr.stream(*SETTINGS[0])
    stream.feed(np.zeros(RATE, np.float32))
    stream.finish()
    with pytest.raises(DataError, match="this stream is finished; open a new one"):
        stream.feed(np.zeros(100, np.float32))


def test_without_a_vocabulary_stream_says_how_to_get_one():
    with pytest.raises(DataError, match="no CTC vocabulary: load it from a folder holding vocab.json"):
        zoo.load("wav2vec2", "torch", config=SMALL).stream()
