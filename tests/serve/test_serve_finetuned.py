"""Serving a fine-tuned zoo model (issue 13, part 5): a tiny GPT-2, Marian and Wav2Vec2 each learn a
repeated example in a few steps, are saved to ``.h5``, loaded back, exported to ONNX and served by
the Deployer on loopback; the generation, translation and transcription that run over HTTP (the
official ``tritonclient.http`` client, binary tensors) equal the in-process model's, and say what
was learnt."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from llmasos import Dataset, Model, Optimizer, export, zoo
from llmasos.serve import Deployer

pytestmark = [pytest.mark.torch, pytest.mark.slow]  # each fine-tunes, exports and serves: 20-60 s

httpclient = pytest.importorskip("tritonclient.http", reason="tritonclient[http] (the dev extra)")

WORDS = [f"w{i}" for i in range(60)] + ["Hello", "[UNK]", "<eos>", "<pad>"]


def _tokenizer(eos: bool = False):
    """Whitespace-separated words; with ``eos``, every text ends in ``<eos>`` (as Marian's do)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors

    tokenizer = Tokenizer(models.WordLevel({word: i for i, word in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.add_special_tokens(["<eos>", "<pad>"])  # already words: marked special, left out of decoded text
    if eos:
        tokenizer.post_processor = processors.TemplateProcessing(single="$A <eos>",
                                                                 special_tokens=[("<eos>", WORDS.index("<eos>"))])
    return tokenizer


class Served:
    """A served model as an ONNX Runtime session (``get_inputs()``, ``run(None, feeds)``), so the
    zoo's own generation and transcription loops run it: every run is one v2 inference request."""

    def __init__(self, client, name: str) -> None:
        self.client, self.name = client, name
        metadata = client.get_model_metadata(name)
        # a file carrying its tokenizer also advertises a BYTES "text" input: not one of the graph's
        self._inputs = [SimpleNamespace(name=i["name"], datatype=i["datatype"]) for i in metadata["inputs"]
                        if i["datatype"] != "BYTES"]
        self._outputs = [o["name"] for o in metadata["outputs"]]
        self.requests = 0

    def get_inputs(self) -> list:
        return self._inputs

    def run(self, output_names, feeds: dict) -> list[np.ndarray]:
        inputs = []
        for spec in self._inputs:
            array = np.ascontiguousarray(feeds[spec.name])
            item = httpclient.InferInput(spec.name, list(array.shape), spec.datatype)
            item.set_data_from_numpy(array, binary_data=True)
            inputs.append(item)
        wanted = [httpclient.InferRequestedOutput(name, binary_data=True) for name in self._outputs]
        result = self.client.infer(self.name, inputs, outputs=wanted)
        self.requests += 1
        return [result.as_numpy(name) for name in (output_names or self._outputs)]


def _serve(tmp_path, parts: dict[str, Model]):
    """Export each model to ``repo/<name>/1/model.onnx`` and start a Deployer on a free loopback port."""
    for name, model in parts.items():
        path = tmp_path / "repo" / name / "1" / "model.onnx"
        path.parent.mkdir(parents=True)
        export.to_onnx(model, path)  # verified against the model by the export itself
    return Deployer(tmp_path / "repo", port=0, poll_s=0)


def _folder(path, build, tokenizer_files: dict[str, str] | None = None, eos: bool = False):
    """A Hugging Face folder of the random transformers model ``build()`` makes, and its tokenizer:
    what a .h5 names as its source, so the loaded model has its tokenizer again. Seeded before the
    model is built, so its weights do not depend on the tests that ran before."""
    import torch

    torch.manual_seed(0)
    build().save_pretrained(path)
    if tokenizer_files is None:
        _tokenizer(eos).save(str(path / "tokenizer.json"))
    for name, text in (tokenizer_files or {}).items():
        (path / name).write_text(text)
    return path


def _reload(model: Model, tmp_path, name: str) -> Model:
    model.save(tmp_path / f"{name}.h5")
    loaded = Model.load(tmp_path / f"{name}.h5")
    assert type(loaded).__name__ == type(model).__name__ and loaded.tokenizer is not None
    return loaded


def test_a_fine_tuned_gpt2_generates_over_http_what_it_generates_in_process(tmp_path):
    import transformers

    config = transformers.GPT2Config(vocab_size=len(WORDS), n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=60, eos_token_id=62)
    folder = _folder(tmp_path / "gpt2-folder", lambda: transformers.GPT2LMHeadModel(config))
    gpt = zoo.load("gpt2", "torch", pretrained=folder)
    text = Dataset(["Hello w5 w17 w42 w8 w33"] * 4, text=0, tokenizer=gpt, task="causal-lm")
    gpt.train(text, Optimizer("AdamW", lr=1e-2), epochs=15, batch_size=4, seed=0)
    loaded = _reload(gpt, tmp_path, "gpt2")
    learnt = loaded.generate(["Hello w5", "Hello"], max_new_tokens=4)
    assert learnt[0] == "Hello w5 w17 w42 w8 w33"
    with _serve(tmp_path, {"gpt2": loaded.decoder()}) as deployer:
        served = Served(httpclient.InferenceServerClient(deployer.url.removeprefix("http://")), "gpt2")
        assert loaded.generate(["Hello w5", "Hello"], max_new_tokens=4, session=served) == learnt
        # prompts of different lengths go through a cached decoder one after the other: the prompt,
        # then a cached step for each new token after the first, for each of the two
        assert served.requests == 2 * 4


def test_a_fine_tuned_marian_translates_over_http_what_it_translates_in_process(tmp_path):
    import transformers

    size = len(WORDS)
    config = transformers.MarianConfig(
        vocab_size=size, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=32,
        scale_embedding=True, activation_function="swish", pad_token_id=size - 1, decoder_start_token_id=size - 1,
        eos_token_id=size - 2, forced_eos_token_id=None, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0)
    mt = zoo.load("marian", "torch", pretrained=_folder(tmp_path / "marian-folder", lambda: transformers.MarianMTModel(config),
                                                     eos=True))
    pairs = Dataset(pd.DataFrame({"en": ["w1 w2 w3"] * 4, "de": ["w40 w41 w42 w43"] * 4}), text="en",
                    target_text="de", tokenizer=mt)
    mt.train(pairs, Optimizer("AdamW", lr=5e-3), epochs=40, batch_size=4, seed=0)
    loaded = _reload(mt, tmp_path, "marian")
    learnt = loaded.translate(["w1 w2 w3", "w1 w2"], num_beams=1, max_new_tokens=8)
    assert learnt[0] == "w40 w41 w42 w43"
    with _serve(tmp_path, {"encoder": loaded.encoder(), "decoder": loaded.decoder()}) as deployer:
        client = httpclient.InferenceServerClient(deployer.url.removeprefix("http://"))
        session = (Served(client, "encoder"), Served(client, "decoder"))
        assert loaded.translate(["w1 w2 w3", "w1 w2"], num_beams=1, max_new_tokens=8, session=session) == learnt
        assert session[0].requests == 1 and session[1].requests >= 5


def _clip(samples: int, seed: int) -> np.ndarray:
    return (0.3 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def _write_wav(path, samples: np.ndarray) -> None:
    import wave

    with wave.open(str(path), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)
        file.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.mark.parametrize("norm", ["group", "layer"])
def test_a_fine_tuned_wav2vec2_transcribes_over_http_what_it_transcribes_in_process(norm, tmp_path):
    """"layer" takes an attention mask: the served batch of clips of different lengths carries it."""
    import json

    import transformers

    config = transformers.Wav2Vec2Config(
        vocab_size=12, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=64,
        conv_dim=[16, 16, 16], conv_kernel=[10, 3, 3], conv_stride=[5, 2, 2], num_conv_pos_embeddings=16,
        num_conv_pos_embedding_groups=4, feat_extract_norm=norm, do_stable_layer_norm=norm == "layer",
        hidden_dropout=0.0, activation_dropout=0.0, attention_dropout=0.0, feat_proj_dropout=0.0, final_dropout=0.0,
        layerdrop=0.0, mask_time_prob=0.0, initializer_range=0.2)  # wide weights: CTC leaves its blank plateau sooner
    vocabulary = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("EHLOTWD")}}
    folder = _folder(tmp_path / "asr-folder", lambda: transformers.Wav2Vec2ForCTC(config),
                     {"vocab.json": json.dumps(vocabulary)})
    asr = zoo.load("wav2vec2", "torch", pretrained=folder)
    _write_wav(tmp_path / "clip.wav", _clip(1600, 2))
    rows = pd.DataFrame({"path": [str(tmp_path / "clip.wav")] * 4, "transcript": ["HOWL TOLD"] * 4})
    clips = Dataset(rows, audio="path", text="transcript", tokenizer=asr)
    asr.train(clips, Optimizer("AdamW", lr=3e-3), epochs=60, batch_size=4, seed=0)
    loaded = _reload(asr, tmp_path, "asr")
    assert loaded.takes_mask == (norm == "layer")
    learnt = str(tmp_path / "clip.wav")
    assert loaded.transcribe(learnt) == "HOWL TOLD"
    waves = [learnt, _clip(2400, 3), _clip(3200, 4)]  # one batch, padded to the longest
    expected = loaded.transcribe(waves)
    if loaded.takes_mask:  # padding changes nothing (a GroupNorm model's statistics include it)
        assert expected[0] == "HOWL TOLD"
    with _serve(tmp_path, {"asr": loaded}) as deployer:
        served = Served(httpclient.InferenceServerClient(deployer.url.removeprefix("http://")), "asr")
        assert [i.name for i in served.get_inputs()] == [i.name for i in loaded.spec.inputs]
        assert loaded.transcribe(waves, session=served) == expected
        assert served.requests == 1
        # the streaming endpoint (one window at a time) says the same of the learnt clip
        websockets_client = pytest.importorskip("websockets.sync.client", reason="the websockets package")
        pcm = np.round(np.clip(_clip(1600, 2), -1, 1) * 32767).astype("<i2")
        url = deployer.url.replace("http://", "ws://") + "/v2/models/asr/stream"
        config = {"config": {"chunk_s": 0.2, "left_s": 0.05, "right_s": 0.05}}
        with websockets_client.connect(url, open_timeout=30) as ws:
            ws.send(json.dumps(config))
            ws.send(pcm.tobytes())
            ws.send('{"eof": 1}')
            messages = [json.loads(message) for message in ws]
        stream = loaded.stream(0.2, 0.05, 0.05)
        in_process = stream.feed(pcm) + stream.finish()
        assert messages[:-1] == in_process and messages[-1] == {"eof": True, "text": stream.text}
