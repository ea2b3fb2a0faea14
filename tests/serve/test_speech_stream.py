"""Streaming speech over a WebSocket: a tiny zoo Wav2Vec2 exported with its CTC settings, served by
the real server on a free loopback port, and a real WebSocket client (the ``websockets`` package)
sending a config and then binary PCM; the events are those of the same stream run in-process."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest

from llmasos import export, zoo
from llmasos.serve import Deployer
from llmasos.audio import CTCVocabulary

from .conftest import affine_model

pytestmark = pytest.mark.torch

websockets_client = pytest.importorskip("websockets.sync.client", reason="the websockets package (uvicorn[standard])")

SMALL = {"vocab_size": 12, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
         "intermediate_size": 64, "conv_dim": [16, 16, 16], "conv_kernel": [10, 3, 3], "conv_stride": [5, 2, 2],
         "num_conv_pos_embeddings": 16, "num_conv_pos_embedding_groups": 4}
VOCABULARY = {"<pad>": 0, "<s>": 1, "</s>": 2, "<unk>": 3, "|": 4, **{c: 5 + i for i, c in enumerate("EHLOTWD")}}
CONFIG = {"sample_rate": 16000, "format": "s16le", "chunk_s": 0.5, "left_s": 0.1, "right_s": 0.05,
          "endpoint_s": 0.01}
TIMEOUT_S = 30


@pytest.fixture(scope="module")
def asr(tmp_path_factory):
    """The zoo model (its blank favoured, so that it writes letters and pauses) and a repository
    holding its export as ``asr``, beside a model that takes no audio, ``plain``."""
    model = zoo.load("wav2vec2", "torch", config=SMALL, tokenizer=CTCVocabulary(VOCABULARY), seed=0)
    logits = model.predict(model.input_values(_speech() / 32768.0))[0]
    margin = np.delete(logits, 0, axis=1).max(axis=1) - logits[:, 0]
    weights = model.get_weights()
    weights["lm_head"]["bias"][0] += np.quantile(margin, 0.8)  # the blank wins ~80% of frames: pauses
    model.set_weights(weights)
    root = tmp_path_factory.mktemp("speech-repo")
    path = root / "asr" / "1" / "model.onnx"
    path.parent.mkdir(parents=True)
    export.to_onnx(model, path)
    affine_model(root / "plain" / "1" / "model.onnx")
    return model, root


@pytest.fixture(scope="module")
def server(asr):
    with Deployer(asr[1], port=0, poll_s=0) as deployer:
        yield deployer


def _speech() -> np.ndarray:
    speech = 0.3 * np.random.default_rng(2).standard_normal(20_000)
    speech[6000:9000] = 0.0
    return np.round(speech * 32767).astype(np.int16)


def _converse(url: str, first: str | dict, pieces: list[bytes], eof: bool = True, **options) -> list[dict]:
    """Every message the server sends until it closes."""
    from websockets.exceptions import ConnectionClosed

    with websockets_client.connect(url, open_timeout=TIMEOUT_S, close_timeout=TIMEOUT_S, **options) as ws:
        try:
            ws.send(first if isinstance(first, str) else json.dumps(first))
            for piece in pieces:
                ws.send(piece)
            if eof:
                ws.send('{"eof": 1}')
        except ConnectionClosed:  # a server that refused at once: its messages are still to read
            pass
        messages = []
        while True:
            try:
                messages.append(json.loads(ws.recv(timeout=TIMEOUT_S)))
            except ConnectionClosed:
                messages.append({"closed": ws.close_code})
                return messages


def test_streamed_over_a_websocket_the_events_are_the_in_process_stream(server, asr):
    model, _ = asr
    pcm = _speech()
    stream = model.stream(CONFIG["chunk_s"], CONFIG["left_s"], CONFIG["right_s"], endpoint_s=CONFIG["endpoint_s"])
    want = stream.feed(pcm) + stream.finish()
    assert sum("final" in e for e in want) >= 2 and any("partial" in e for e in want)
    url = server.url.replace("http", "ws") + "/v2/models/asr/stream"
    pieces = [pcm[i:i + 1234].tobytes() for i in range(0, len(pcm), 1234)]
    got = _converse(url, {"config": CONFIG}, pieces)
    assert got == [*want, {"eof": True, "text": stream.text}, {"closed": 1000}]
    # float32 samples, pieces of another size, the version's own path: the same
    floats = (pcm / 32768.0).astype("<f4")
    got = _converse(url.replace("/stream", "/versions/1/stream"), {"config": {**CONFIG, "format": "f32le"}},
                    [floats[i:i + 5000].tobytes() for i in range(0, len(floats), 5000)])
    assert got[:-2] == want


def test_metadata_lists_the_extension_and_which_models_take_audio(server):
    assert "speech_stream" in httpx.get(f"{server.url}/v2", timeout=10).json()["extensions"]
    assert httpx.get(f"{server.url}/v2/models/asr", timeout=10).json()["speech_stream"] is True
    assert httpx.get(f"{server.url}/v2/models/plain", timeout=10).json()["speech_stream"] is False


@pytest.mark.parametrize("first, pieces, message", [
    ({"config": {"sample_rate": 8000}}, [], r"audio sampled at 8000 Hz; model 'asr' takes 16000 Hz"),
    ({"config": {"format": "mp3"}}, [], r"format 'mp3' is not one of \['f32le', 's16le'\]"),
    ({"config": {"chunk": 1}}, [], r"unknown config key\(s\) \['chunk'\]"),
    ({"config": {"chunk_s": 0.2, "left_s": 0.1, "right_s": 0.1}}, [], r"chunk_s=0.2 must be longer than left_s"),
    ("not json", [], r"a text message must be JSON"),
    ({"sample_rate": 16000}, [], r"the first message is the config"),
    ({"config": {}}, [b"\x00\x01\x02"], r"3 bytes is not whole 2-byte samples"),
    ({"config": {}}, [], r"the stream got no audio"),
])
def test_bad_config_or_audio_is_an_error_message_then_a_close(server, first, pieces, message):
    import re

    got = _converse(server.url.replace("http", "ws") + "/v2/models/asr/stream", first, pieces)
    assert len(got) == 2 and re.search(message, got[0]["error"]), got
    assert got[1] == {"closed": 1003}


def test_a_model_without_ctc_settings_or_an_unknown_one_is_refused(server):
    base = server.url.replace("http", "ws")
    got = _converse(f"{base}/v2/models/plain/stream", {"config": {}}, [], eof=False)
    assert "does not take streamed audio" in got[0]["error"] and got[1] == {"closed": 1003}
    got = _converse(f"{base}/v2/models/nope/stream", {"config": {}}, [], eof=False)
    assert "nope" in got[0]["error"] and got[1] == {"closed": 1008}


def test_with_a_token_the_handshake_must_carry_it(asr):
    with Deployer(asr[1], port=0, poll_s=0, token="s3cret") as deployer:
        url = deployer.url.replace("http", "ws") + "/v2/models/asr/stream"
        refused = _converse(url, {"config": {}}, [], eof=False)
        assert refused[0] == {"error": "missing or wrong bearer token"} and refused[1] == {"closed": 1008}
        pcm = _speech()[:8000].tobytes()
        got = _converse(url, {"config": CONFIG}, [pcm], additional_headers={"Authorization": "Bearer s3cret"})
        assert got[-2]["eof"] is True and got[-1] == {"closed": 1000}
