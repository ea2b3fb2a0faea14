"""Streaming speech-to-text over a WebSocket: ``/v2/models/{name}/stream`` (or
``/v2/models/{name}/versions/{v}/stream``), for a model whose file carries CTC settings
(``llmasos.ctc`` metadata, written when a zoo Wav2Vec2 is exported).

The conversation, as Vosk's server holds it:

1. the client sends a JSON text message ``{"config": {...}}``, every key optional:
   ``sample_rate`` (16000, the only rate taken; nothing is resampled), ``format`` (``"s16le"``,
   16-bit little-endian PCM, the default, or ``"f32le"``), ``chunk_s``, ``left_s``, ``right_s``
   and ``endpoint_s`` (see :mod:`llmasos.zoo.streaming`; defaults 1.0, 0.5, 0.25 and 0.5);
2. then binary messages of mono PCM in that format, any length; after each, the server sends
   one JSON text message per event: ``{"partial": "..."}`` or ``{"final": "...", "start": s,
   "end": s}``;
3. the client sends ``{"eof": 1}``; the server sends the last events, then
   ``{"eof": true, "text": "<the whole transcript>"}``, and closes (1000).

A mistake is answered ``{"error": "..."}`` and the connection closed: 1008 for a missing or wrong
token, 1003 for audio or a config the server cannot take, 1011 when the model fails. With a
token, the handshake carries ``Authorization: Bearer <token>``.

::

    from websockets.sync.client import connect
    with connect("ws://127.0.0.1:8000/v2/models/asr/stream") as ws:
        ws.send(json.dumps({"config": {"sample_rate": 16000, "chunk_s": 1.0}}))
        for piece in pieces:            # int16 arrays
            ws.send(piece.tobytes())
        ws.send('{"eof": 1}')
        for message in ws:              # ends when the server closes
            print(json.loads(message))
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from anyio import to_thread
from starlette.websockets import WebSocket, WebSocketDisconnect

from ..errors import DataError, LlmasosError, ServeError
from ..zoo.streaming import ChunkPlan, CTCSpeech, SpeechStream, window_feeds

if TYPE_CHECKING:
    from .version import ModelVersion

EXTENSION = "speech_stream"  # how the server metadata's extensions name this endpoint
FORMATS = {"s16le": np.dtype("<i2"), "f32le": np.dtype("<f4")}
_SETTINGS = {"sample_rate", "format", "chunk_s", "left_s", "right_s", "endpoint_s"}
BAD_DATA, POLICY, INTERNAL = 1003, 1008, 1011


class StreamError(Exception):
    """Ends a conversation: the message for the client and the close code."""

    def __init__(self, message: str, code: int = BAD_DATA) -> None:
        super().__init__(message)
        self.code = code


def open_stream(model: ModelVersion, message: Mapping[str, Any]) -> tuple[SpeechStream, np.dtype]:
    """A stream on ``model`` as the client's config message asks, and the PCM format it sends."""
    if model.speech is None:
        raise StreamError(f"model {model.name!r} does not take streamed audio: its file carries no CTC speech "
                          f"settings (llmasos.ctc; exporting a zoo Wav2Vec2 writes them)")
    config = message.get("config") if isinstance(message, Mapping) else None
    if not isinstance(config, Mapping):
        raise StreamError('the first message is the config, a JSON object {"config": {"sample_rate": 16000, ...}}')
    unknown = sorted(set(config) - _SETTINGS)
    if unknown:
        raise StreamError(f"unknown config key(s) {unknown}; known: {sorted(_SETTINGS)}")
    rate = config.get("sample_rate", model.speech.sampling_rate)
    if rate != model.speech.sampling_rate:
        raise StreamError(f"audio sampled at {rate} Hz; model {model.name!r} takes {model.speech.sampling_rate} Hz: "
                          f"resample before sending")
    if config.get("format", "s16le") not in FORMATS:
        raise StreamError(f"format {config.get('format')!r} is not one of {sorted(FORMATS)}")
    output = model.outputs[0].name
    input_names = [spec.name for spec in model.inputs]

    def logits(values: np.ndarray) -> np.ndarray:
        return model.run(window_feeds(input_names, values))[output]

    try:
        plan = ChunkPlan.from_seconds(config.get("chunk_s", 1.0), config.get("left_s", 0.5), config.get("right_s", 0.25),
                                      model.speech.frame_stride, model.speech.sampling_rate)
        stream = SpeechStream(logits, model.speech, plan, config.get("endpoint_s", 0.5))
    except DataError as exc:
        raise StreamError(str(exc)) from None
    return stream, FORMATS[config.get("format", "s16le")]


def _samples(data: bytes, dtype: np.dtype) -> np.ndarray:
    if len(data) % dtype.itemsize:
        raise StreamError(f"a binary message of {len(data)} bytes is not whole {dtype.itemsize}-byte samples")
    return np.frombuffer(data, dtype).astype(dtype.newbyteorder("="))


async def converse(websocket: WebSocket, model: ModelVersion) -> None:
    """Hold one streaming conversation on an accepted WebSocket (see the module's docstring)."""
    stream: SpeechStream | None = None
    dtype = FORMATS["s16le"]
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                try:
                    parsed = json.loads(message["text"])
                except json.JSONDecodeError:
                    raise StreamError("a text message must be JSON: the config, or {\"eof\": 1}") from None
                if stream is None:
                    stream, dtype = open_stream(model, parsed)
                    continue
                if not (isinstance(parsed, Mapping) and parsed.get("eof")):
                    raise StreamError('after the config, text messages are only {"eof": 1}; audio goes in binary')
                for event in await to_thread.run_sync(stream.finish):
                    await websocket.send_json(event)
                await websocket.send_json({"eof": True, "text": stream.text})
                await websocket.close(1000)
                return
            if stream is None:
                raise StreamError('send the config ({"config": {...}}) before any audio')
            samples = _samples(message.get("bytes") or b"", dtype)
            for event in await to_thread.run_sync(stream.feed, samples):
                await websocket.send_json(event)
    except WebSocketDisconnect:
        return
    except StreamError as exc:
        await _refuse(websocket, str(exc), exc.code)
    except ServeError as exc:
        await _refuse(websocket, str(exc), BAD_DATA if exc.status < 500 else INTERNAL)
    except LlmasosError as exc:
        await _refuse(websocket, str(exc), BAD_DATA)


async def _refuse(websocket: WebSocket, message: str, code: int) -> None:
    try:
        await websocket.send_json({"error": message})
        await websocket.close(code)
    except (WebSocketDisconnect, RuntimeError):  # the client has gone already
        pass


def speech_settings(metadata: Mapping[str, str]) -> CTCSpeech | None:
    """The CTC settings an ONNX file's ``metadata_props`` carry; None without them."""
    from ..export.metadata import CTC

    if CTC not in metadata:
        return None
    try:
        return CTCSpeech.from_json(json.loads(metadata[CTC]))
    except (json.JSONDecodeError, LlmasosError) as exc:
        raise ServeError(f"the file's {CTC} metadata cannot be read: {exc}", 500) from None
