"""Real-time speech-to-text with a CTC model (:mod:`.wav2vec2`): audio in pieces of any size, text
as it comes.

The audio is cut as transformers' ASR pipeline cuts it (``chunk_length_s``, ``stride_length_s``):
windows of ``chunk_s`` seconds, of which ``left_s`` and ``right_s`` are context that the
neighbouring windows transcribe, so each window moves on by ``chunk_s - left_s - right_s``. Each
window is normalised on its own and runs the model; the frames of its context are dropped and the
rest joined, and greedy CTC decoding runs over the joined frames, so a letter cut at a window's
border is neither lost nor doubled. The text of a whole stream is the pipeline's text for the
same audio and settings, whatever sizes the pieces came in.

A stream also cuts the text into utterances: after ``endpoint_s`` seconds of frames that are
blank or word delimiters (a pause), what came before is final.

::

    stream = asr.stream(chunk_s=1.0, left_s=0.5, right_s=0.25)   # or session="asr.onnx"
    for pcm in microphone():                                      # 16 kHz float or int16, any length
        for event in stream.feed(pcm):
            print(event)      # {"partial": "HELLO WO"} ... {"final": "HELLO WORLD", "start": 0.52, "end": 1.4}
    stream.finish()           # the last events; stream.text is the whole transcript

>>> plan = ChunkPlan.from_seconds(1.0, 0.2, 0.2, frame_stride=320)   # wav2vec2-base: 20 ms frames
>>> plan.chunk, plan.left, plan.right, plan.step
(16000, 3200, 3200, 9600)
>>> [(s.start, s.end, s.left, s.right) for s in chunk_spans(30000, plan)]
[(0, 16000, 0, 3200), (9600, 25600, 3200, 3200), (19200, 30000, 3200, 0)]
>>> kept_frames(16000, 3200, 3200, 320)    # a middle window keeps frames 10 to 39 of its 49
(10, 40)
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import DataError, ZooError
from .. import audio

Event = dict[str, Any]
Logits = Callable[[np.ndarray], np.ndarray]  # (1, samples) float32 -> (1, frames, vocabulary)
INT16_SCALE = 32768.0  # int16 PCM to [-1, 1), as read_wav scales it


@dataclasses.dataclass(frozen=True)
class CTCSpeech:
    """What a stream needs to know of a CTC model besides its logits: the vocabulary, how many
    samples one frame moves by (``frame_stride``), how many it sees (``receptive_field``), whether
    each window is scaled to zero mean and unit variance, and the sampling rate. An exported
    file carries it in its metadata (``llmasos.ctc``), so a server can stream from the file alone."""

    vocabulary: audio.CTCVocabulary
    frame_stride: int
    receptive_field: int
    normalize: bool = True
    sampling_rate: int = audio.SAMPLING_RATE

    @classmethod
    def of(cls, asr: Any) -> CTCSpeech:
        """The settings of a zoo Wav2Vec2 (it must have its CTC vocabulary)."""
        if asr.tokenizer is None:
            raise DataError(f"{asr.name} has no CTC vocabulary: load it from a folder holding "
                            f"{audio.VOCABULARY_FILE}, or pass tokenizer= (a path to one) to zoo.load")
        return cls(asr.tokenizer, int(np.prod(asr.config.conv_stride)), asr.config.receptive_field,
                   bool(asr._preprocessor.get("do_normalize", True)))

    def to_json(self) -> dict[str, Any]:
        """Plain data for an ONNX file's metadata; :meth:`from_json` reads it back."""
        vocabulary = self.vocabulary
        return {"vocabulary": {token: i for i, token in vocabulary.tokens.items()},
                "pad_token": vocabulary.pad_token, "word_delimiter_token": vocabulary.word_delimiter_token,
                "frame_stride": self.frame_stride, "receptive_field": self.receptive_field,
                "normalize": self.normalize, "sampling_rate": self.sampling_rate}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CTCSpeech:
        try:
            vocabulary = audio.CTCVocabulary(data["vocabulary"], data["pad_token"], data["word_delimiter_token"])
            return cls(vocabulary, int(data["frame_stride"]), int(data["receptive_field"]), bool(data["normalize"]),
                       int(data["sampling_rate"]))
        except (KeyError, TypeError, ValueError) as err:
            raise ZooError(f"CTC speech settings need vocabulary, pad_token, word_delimiter_token, frame_stride, "
                           f"receptive_field, normalize and sampling_rate: {err!r}") from None


@dataclasses.dataclass(frozen=True)
class ChunkPlan:
    """Window, left and right context in samples, each a whole number of frames (as the pipeline
    rounds them)."""

    chunk: int
    left: int
    right: int

    @classmethod
    def from_seconds(cls, chunk_s: float, left_s: float, right_s: float, frame_stride: int,
                     sampling_rate: int = audio.SAMPLING_RATE) -> ChunkPlan:
        """Seconds to samples, rounded to frames as transformers' pipeline does (``chunk_length_s``
        = ``chunk_s``, ``stride_length_s`` = ``(left_s, right_s)``)."""
        for name, value, least in (("chunk_s", chunk_s, 0.0), ("left_s", left_s, 0.0), ("right_s", right_s, 0.0)):
            if not isinstance(value, (int, float)) or not np.isfinite(value) or value < least:
                raise DataError(f"{name} must be a number of seconds >= 0, got {value!r}")

        def samples(seconds: float) -> int:
            return int(round(seconds * sampling_rate / frame_stride) * frame_stride)

        plan = cls(samples(chunk_s), samples(left_s), samples(right_s))
        if plan.step <= 0:
            raise DataError(f"chunk_s={chunk_s} must be longer than left_s + right_s = {left_s + right_s} (after "
                            f"rounding to {frame_stride}-sample frames: {plan.chunk} <= {plan.left} + {plan.right} "
                            f"samples), or no window would move on")
        return plan

    @property
    def step(self) -> int:
        """How far one window moves on from the last."""
        return self.chunk - self.left - self.right


@dataclasses.dataclass(frozen=True)
class Span:
    """One window of a recording, in samples, with the context at each side its text leaves out."""

    start: int
    end: int
    left: int
    right: int


def chunk_spans(total: int, plan: ChunkPlan) -> Iterator[Span]:
    """The windows of a whole recording of ``total`` samples, as transformers' ``chunk_iter``
    makes them: no left context in the first, no right context in the last, and a last window
    that is all left context is skipped."""
    for start in range(0, total, plan.step):
        last = start + plan.chunk >= total
        span = Span(start, min(start + plan.chunk, total), 0 if start == 0 else plan.left, 0 if last else plan.right)
        if span.end - span.start > span.left:
            yield span
        if last:
            break


def kept_frames(length: int, left: int, right: int, frame_stride: int) -> tuple[int, int]:
    """The frames a window of ``length`` samples keeps, ``[first, stop)``: its context's frames
    dropped as the pipeline's ``rescale_stride`` counts them (``stop`` counts from the nominal
    ``length / frame_stride`` frames, not the fewer the convolutions give)."""
    frames = int(round(length * (1 / frame_stride)))
    return int(round(left / length * frames)), frames - int(round(right / length * frames))


class _Utterances:
    """Frame ids in, partial and final texts out: a pause of ``endpoint`` frames that are blank
    or word delimiters ends an utterance."""

    def __init__(self, vocabulary: audio.CTCVocabulary, endpoint: int) -> None:
        self.vocabulary, self.endpoint = vocabulary, endpoint
        self._silent = {vocabulary.blank, *(i for i, t in vocabulary.tokens.items()
                                            if t == vocabulary.word_delimiter_token)}
        self.ids: list[np.ndarray] = []       # every frame so far, for the whole transcript
        self._segment: list[int] = []         # frame ids of the utterance under way
        self._times: list[float] = []         # and their start times in seconds
        self._pause = 0                       # silent frames since the utterance's last sound
        self._partial = ""

    def add(self, ids: np.ndarray, times: np.ndarray, frame_s: float) -> list[Event]:
        self.ids.append(ids)
        events: list[Event] = []
        for frame, time in zip(ids.tolist(), times.tolist()):
            self._segment.append(frame)
            self._times.append(time)
            self._pause = self._pause + 1 if frame in self._silent else 0
            if self._pause >= self.endpoint:
                events += self._final(frame_s)
        text = self.vocabulary.decode(self._segment)
        if text and text != self._partial:
            events.append({"partial": text})
            self._partial = text
        return events

    def _final(self, frame_s: float) -> list[Event]:
        """The utterance under way as a final event (none if it has no text yet); a new one begins."""
        segment, times = np.array(self._segment, dtype=np.int64), self._times
        self._segment, self._times, self._partial = [], [], ""
        sounds = np.flatnonzero(~np.isin(segment, list(self._silent)))
        text = self.vocabulary.decode(segment)
        if not text:
            return []
        return [{"final": text, "start": round(times[sounds[0]], 6), "end": round(times[sounds[-1]] + frame_s, 6)}]

    def close(self, frame_s: float) -> list[Event]:
        return self._final(frame_s)

    @property
    def text(self) -> str:
        return self.vocabulary.decode(np.concatenate(self.ids)) if self.ids else ""


def pcm_samples(pcm: Any) -> np.ndarray:
    """One piece of mono PCM as float32: float samples as they are, int16 scaled to [-1, 1)."""
    array = np.asarray(pcm)
    if array.dtype == np.int16:
        array = array.astype(np.float32) / INT16_SCALE
    elif array.dtype.kind == "f":
        array = array.astype(np.float32, copy=False)
    else:
        raise DataError(f"PCM samples are float (in [-1, 1]) or int16, got {array.dtype}")
    if array.ndim == 2 and 1 in array.shape:
        array = array.reshape(-1)   # one channel, as a column or a row
    if array.ndim != 1:
        raise DataError(f"a stream takes mono audio as a 1-D array of samples, got shape {array.shape}; for "
                        f"stereo, pass one channel or their mean (pcm.mean(axis=1))")
    if not np.isfinite(array).all():
        raise DataError("the audio holds NaN or infinite samples")
    return array


class SpeechStream:
    """Transcribes audio fed in pieces; see the module's docstring. ``logits`` maps a window
    ``(1, samples)`` to ``(1, frames, vocabulary)``; events come back from :meth:`feed` and
    :meth:`finish` as lists."""

    def __init__(self, logits: Logits, speech: CTCSpeech, plan: ChunkPlan, endpoint_s: float = 0.5) -> None:
        if not isinstance(endpoint_s, (int, float)) or not endpoint_s > 0:
            raise DataError(f"endpoint_s must be a positive number of seconds, got {endpoint_s!r}")
        self.speech, self.plan, self._logits = speech, plan, logits
        self._frame_s = speech.frame_stride / speech.sampling_rate
        self._utterances = _Utterances(speech.vocabulary, max(1, int(round(endpoint_s / self._frame_s))))
        self._buffer = np.zeros(0, np.float32)
        self._offset = 0          # the sample the buffer starts at
        self._next = 0            # where the next window starts
        self._pending: tuple[np.ndarray, np.ndarray] | None = None  # the last window's right context
        self._finished = False

    @property
    def samples(self) -> int:
        """Samples fed so far."""
        return self._offset + len(self._buffer)

    @property
    def text(self) -> str:
        """The transcript of every window run so far (after :meth:`finish`, of the whole stream)."""
        return self._utterances.text

    def feed(self, pcm: Any) -> list[Event]:
        """Take a piece of mono 16 kHz PCM (float or int16, any length) and run every window it
        completes; the events are partial texts of the utterance under way and final ones."""
        if self._finished:
            raise DataError("this stream is finished; open a new one for more audio")
        self._buffer = np.concatenate([self._buffer, pcm_samples(pcm)])
        events: list[Event] = []
        plan = self.plan
        while self.samples >= self._next + plan.chunk:
            # a full window; it is the last one only if no more audio comes, so its right
            # context's frames wait in _pending until the next window or finish() decides
            span = Span(self._next, self._next + plan.chunk, 0 if self._next == 0 else plan.left, plan.right)
            ids, times = self._run(span)
            first, stop = kept_frames(plan.chunk, span.left, span.right, self.speech.frame_stride)
            self._pending = ids[stop:], times[stop:]
            events += self._utterances.add(ids[first:stop], times[first:stop], self._frame_s)
            self._next += plan.step
        drop = self._next - self._offset   # samples no later window needs
        if drop > 0:
            self._buffer, self._offset = self._buffer[drop:], self._next
        return events

    def finish(self) -> list[Event]:
        """Run what is left (the last, shorter window) and close the utterance under way."""
        if self._finished:
            raise DataError("this stream is already finished")
        self._finished = True
        total, plan = self.samples, self.plan
        if total < self.speech.receptive_field:
            what = "no audio" if total == 0 else f"{total} samples"
            raise DataError(f"the stream got {what}; one frame of this model needs {self.speech.receptive_field} "
                            f"samples ({1000 * self.speech.receptive_field / self.speech.sampling_rate:.0f} ms)")
        events: list[Event] = []
        if self._next > 0 and self._next - plan.step + plan.chunk == total:
            ids, times = self._pending   # the last full window was the last: its right context counts
            events += self._utterances.add(ids, times, self._frame_s)
        elif total - self._next > (plan.left if self._next > 0 else 0):
            span = Span(self._next, total, plan.left if self._next > 0 else 0, 0)
            ids, times = self._run(span)
            first, stop = kept_frames(span.end - span.start, span.left, 0, self.speech.frame_stride)
            events += self._utterances.add(ids[first:stop], times[first:stop], self._frame_s)
        self._buffer = np.zeros(0, np.float32)
        return events + self._utterances.close(self._frame_s)

    def _run(self, span: Span) -> tuple[np.ndarray, np.ndarray]:
        """The window's frame ids (greedy) and their start times in seconds."""
        window = self._buffer[span.start - self._offset:span.end - self._offset]
        if len(window) < self.speech.receptive_field:  # too short for one frame
            return np.zeros(0, np.int64), np.zeros(0)
        values = audio.batch([window], self.speech.normalize)
        ids = np.asarray(self._logits(values))[0].argmax(axis=-1)
        times = (span.start + self.speech.frame_stride * np.arange(len(ids))) / self.speech.sampling_rate
        return ids, times


def transcribe_chunked(logits: Logits, speech: CTCSpeech, waveform: Any, plan: ChunkPlan) -> str:
    """A whole recording's text, window by window (:func:`chunk_spans`): what a stream gives
    when fed the same audio in any pieces, and what transformers' pipeline gives."""
    samples = pcm_samples(waveform)
    ids = []
    for span in chunk_spans(len(samples), plan):
        window = samples[span.start:span.end]
        if len(window) < speech.receptive_field:
            continue
        frames = np.asarray(logits(audio.batch([window], speech.normalize)))[0].argmax(axis=-1)
        first, stop = kept_frames(len(window), span.left, span.right, speech.frame_stride)
        ids.append(frames[first:stop])
    return speech.vocabulary.decode(np.concatenate(ids)) if ids else ""


def window_feeds(names: Sequence[str], values: np.ndarray) -> dict[str, np.ndarray]:
    """A window ``(1, samples)`` as the feeds of a model whose inputs are ``names``: the samples
    under the first name, and an all-ones ``attention_mask`` for a model that takes one (a
    window is never padded: every sample counts)."""
    feeds = {names[0]: values}
    if "attention_mask" in names[1:]:
        feeds["attention_mask"] = np.ones(np.shape(values), np.int64)
    return feeds


def session_logits(session: Any) -> Logits:
    """A window's logits from an ONNX Runtime session (or a path to an ONNX file)."""
    if isinstance(session, (str, os.PathLike)):
        from ..export import load

        session = load(session)
    names = [i.name for i in session.get_inputs()]
    return lambda values: session.run(None, window_feeds(names, values))[0]


def open_stream(asr: Any, chunk_s: float = 1.0, left_s: float = 0.5, right_s: float = 0.25, *,
                sampling_rate: int = audio.SAMPLING_RATE, session: Any = None,
                endpoint_s: float = 0.5) -> SpeechStream:
    """A :class:`SpeechStream` on a zoo Wav2Vec2, run by its framework or by ``session`` (an ONNX
    file or ONNX Runtime session of its export). ``sampling_rate`` is the audio's: the model takes
    16 kHz and nothing is resampled."""
    if sampling_rate != audio.SAMPLING_RATE:
        raise DataError(f"audio sampled at {sampling_rate} Hz; this model takes {audio.SAMPLING_RATE} Hz. Resample "
                        f"it first (e.g. scipy.signal.resample_poly(x, {audio.SAMPLING_RATE}, {sampling_rate}))")
    speech = CTCSpeech.of(asr)
    plan = ChunkPlan.from_seconds(chunk_s, left_s, right_s, speech.frame_stride, speech.sampling_rate)
    return SpeechStream(asr.predict if session is None else session_logits(session), speech, plan, endpoint_s)
