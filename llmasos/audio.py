"""Speech in and text out for CTC models (:mod:`llmasos.zoo.wav2vec2`): waveforms as model inputs,
and greedy CTC decoding with a character vocabulary. Neutral (NumPy and the standard library), so
datasets (:mod:`llmasos.data.audio`) and the zoo share it without importing each other.

>>> vocabulary = CTCVocabulary({"<pad>": 0, "|": 1, "A": 2, "B": 3})
>>> vocabulary.decode([2, 2, 0, 2, 1, 1, 3, 0])  # repeats collapse, blanks split them, | is a space
'AA B'
"""

from __future__ import annotations

import json
import os
import wave
from itertools import groupby
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import DataError, ZooError

SAMPLING_RATE = 16_000
VOCABULARY_FILE = "vocab.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
PREPROCESSOR_FILE = "preprocessor_config.json"


class CTCVocabulary:
    """Hugging Face's ``Wav2Vec2CTCTokenizer`` for decoding: ``vocab.json`` (token -> id), the
    blank (its pad token) and the word delimiter that stands for a space."""

    def __init__(self, vocabulary: dict[str, int], pad_token: str = "<pad>", word_delimiter_token: str = "|") -> None:
        if pad_token not in vocabulary:
            raise ZooError(f"the CTC vocabulary has no blank token {pad_token!r} (its pad token)")
        self.tokens = {int(i): token for token, i in vocabulary.items()}
        self.pad_token, self.word_delimiter_token = pad_token, word_delimiter_token
        self.blank = vocabulary[pad_token]

    @classmethod
    def from_folder(cls, folder: str | os.PathLike) -> "CTCVocabulary":
        """``vocab.json`` and, when present, the special tokens in ``tokenizer_config.json``."""
        folder = Path(folder)
        path = folder / VOCABULARY_FILE if folder.is_dir() else folder
        try:
            vocabulary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ZooError(f"{path}: not a readable CTC vocabulary ({err})") from None
        if not isinstance(vocabulary, dict) or not all(isinstance(v, int) for v in vocabulary.values()):
            raise ZooError(f"{path}: a CTC vocabulary maps tokens to integer ids")
        settings_path = path.parent / TOKENIZER_CONFIG_FILE
        settings = json.loads(settings_path.read_text()) if settings_path.is_file() else {}
        return cls(vocabulary, _token(settings.get("pad_token"), "<pad>"),
                   _token(settings.get("word_delimiter_token"), "|"))

    def encode(self, text: str) -> list[int]:
        """A transcript's ids for CTC training, as ``Wav2Vec2CTCTokenizer`` makes them: one per
        character, spaces as the word delimiter. A character the vocabulary lacks is a
        :class:`DataError` naming it (rather than an ``<unk>`` the model would learn to emit).

        >>> CTCVocabulary({"<pad>": 0, "|": 1, "A": 2, "B": 3}).encode("AB  A")
        [2, 3, 1, 2]
        """
        ids = {token: i for i, token in self.tokens.items()}
        characters = list(self.word_delimiter_token if c == " " else c for c in " ".join(text.split()))
        missing = sorted({c for c in characters if c not in ids})
        if missing:
            letters = sorted(t for t in ids if len(t) == 1 and t.isalpha())
            case = " (the vocabulary's letters are upper case: upper-case the transcripts)" if \
                letters and all(t.isupper() for t in letters) and all(c.upper() in ids for c in missing) else ""
            raise DataError(f"transcript {text!r} has characters the CTC vocabulary lacks: {''.join(missing)!r}; "
                            f"it has {''.join(t for t in ids if len(t) == 1)!r}{case}")
        return [ids[c] for c in characters]

    def decode(self, ids: Sequence[int]) -> str:
        """Greedy CTC: collapse repeats, drop blanks, delimiters become spaces."""
        tokens = [self.tokens.get(int(i), "") for i, _ in groupby(ids) if int(i) != self.blank]
        return "".join(" " if token == self.word_delimiter_token else token for token in tokens).strip()


def _token(value: Any, default: str) -> str:
    # tokenizer_config.json stores special tokens as strings or as {"content": ...}
    return value.get("content", default) if isinstance(value, dict) else value or default


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """A PCM ``.wav`` file (8/16/32-bit, any channels, averaged to mono) as float32 in [-1, 1]
    and its sampling rate. Other formats need an audio library; decode them to an array first."""
    try:
        with wave.open(str(path), "rb") as file:
            width, channels, rate = file.getsampwidth(), file.getnchannels(), file.getframerate()
            frames = file.readframes(file.getnframes())
    except (OSError, wave.Error, EOFError) as err:
        raise DataError(f"{path}: not a readable PCM .wav file ({err}); decode other formats to a float array "
                        f"(e.g. with soundfile) and pass that") from None
    if width == 1:
        samples = (np.frombuffer(frames, np.uint8).astype(np.float32) - 128.0) / 128.0
    elif width in (2, 4):
        dtype = np.int16 if width == 2 else np.int32
        samples = np.frombuffer(frames, dtype).astype(np.float32) / float(np.iinfo(dtype).max + 1)
    else:
        raise DataError(f"{path}: {8 * width}-bit samples are not supported (8, 16 or 32-bit PCM)")
    return samples.reshape(-1, channels).mean(axis=1), rate


def several(audio: Any) -> bool:
    """Whether ``audio`` is a list of waveforms rather than one (a list of samples is one)."""
    return isinstance(audio, (list, tuple)) and not all(isinstance(x, (int, float, np.number)) for x in audio)


def waveforms(audio: Any, sampling_rate: int | None, expected_rate: int = SAMPLING_RATE) -> list[np.ndarray]:
    """One waveform or several (arrays or ``.wav`` paths) as a list of 1-D float32 arrays at
    ``expected_rate``; nothing is resampled, a mismatch is an error."""
    items = list(audio) if several(audio) else [audio]
    out = []
    for item in items:
        rate = sampling_rate
        if isinstance(item, (str, os.PathLike)):
            item, rate = read_wav(item)
        array = np.asarray(item, dtype=np.float32)
        if array.ndim != 1 or array.size == 0:
            raise DataError(f"a waveform is a non-empty 1-D array of samples, got shape {array.shape}; pass several "
                            f"as a list")
        if not np.isfinite(array).all():
            raise DataError("the waveform holds NaN or infinite samples")
        if rate is not None and rate != expected_rate:
            raise DataError(f"audio sampled at {rate} Hz; this model takes {expected_rate} Hz. Resample it first "
                            f"(e.g. scipy.signal.resample_poly(x, {expected_rate}, {rate}))")
        out.append(array)
    return out


def batch(arrays: list[np.ndarray], normalize: bool = True, padded_statistics: bool = True) -> np.ndarray:
    """Waveforms as one zero-padded ``(batch, samples)`` array, each row scaled to zero mean and
    unit variance when ``normalize``. As transformers' Wav2Vec2 feature extractor does, the
    statistics include the padding when ``padded_statistics`` (models that take no attention
    mask, such as wav2vec2-base) and cover the samples alone otherwise."""
    out = np.zeros((len(arrays), max(len(a) for a in arrays)), np.float32)
    for row, array in zip(out, arrays):
        row[:len(array)] = array
        if normalize:
            part = row if padded_statistics else row[:len(array)]
            part[:] = (part - part.mean()) / np.sqrt(part.var() + 1e-7)
    return out
