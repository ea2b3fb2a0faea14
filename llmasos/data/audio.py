"""Speech with transcripts for a CTC model: ``Dataset("clips.csv", audio="path", text="transcript",
tokenizer=asr)`` reads every ``.wav`` file once and serves ``({"input_values": ...}, labels)``
batches, each padded to its own longest clip."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..audio import waveforms
from ..errors import DataError
from .dataset import Dataset, buckets
from .text import non_empty_strings, read_table


class AudioDataset(Dataset, keyword="audio"):
    """Audio clips (a column of ``.wav`` paths) and their transcripts, for a zoo speech model.

    ``source`` is a ``.csv``/``.parquet`` file or a DataFrame; ``audio`` names the column of
    ``.wav`` paths (relative ones are read from the table file's folder, or the working folder
    for a DataFrame), ``text`` the transcripts. ``tokenizer`` is the zoo speech model (Wav2Vec2):
    its ``speech_inputs`` pad and normalise a batch of waveforms as it takes them, its
    ``transcript_tokens`` make the label ids. Each batch is padded to its own longest clip, the
    labels with -100 (left out by the CTC loss); ``bucket=True`` groups clips of similar length
    into the shuffled training batches, as :class:`TextDataset` does.

    Every file is read and checked when the dataset is made: a missing file, one that is not a
    PCM ``.wav``, a sampling rate other than the model's (nothing is resampled) or an empty
    transcript is a :class:`DataError` naming the row.
    """

    def __init__(self, source: Any, y: Any = None, *, audio: str = "path", text: str = "transcript",
                 tokenizer: Any = None, mode: str = "train", bucket: bool = False, **unused: Any) -> None:
        if unused or y is not None:
            raise DataError(f"{', '.join([*unused, *(['y'] if y is not None else [])])} do(es) not apply to audio "
                            f"datasets (audio=, text=, tokenizer=, mode=, bucket=)")
        if not (hasattr(tokenizer, "speech_inputs") and hasattr(tokenizer, "transcript_tokens")):
            raise DataError(f"audio= needs tokenizer= a zoo speech model (wav2vec2), got {type(tokenizer).__name__}")
        frame, name = read_table(source, "audio clips", (audio, text))
        if len(frame) == 0:
            raise DataError(f"{name}: the dataset is empty (no rows)")
        transcripts = frame[text].tolist()
        non_empty_strings(transcripts, "transcript", name)
        folder = Path(source).parent if isinstance(source, (str, os.PathLike)) else Path.cwd()
        self.waveforms = [_read(folder, path, row, name) for row, path in enumerate(frame[audio].tolist())]
        self.lengths = np.array([len(w) for w in self.waveforms], np.int64)
        self.transcripts = tokenizer.transcript_tokens(transcripts)
        self._inputs = tokenizer.speech_inputs
        self.name, self.mode, self.bucket = name, mode, bool(bucket)
        self.rows = Dataset(np.arange(len(frame))[:, None], mode=mode, dtype="int64", target=None)
        self.feature_shape = (int(self.lengths.max()),)

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def streaming(self) -> bool:
        return False

    @property
    def has_labels(self) -> bool:
        return True

    @property
    def label_dtype(self) -> np.dtype:
        return np.dtype(np.int64)

    def labels_range(self) -> tuple[int, int]:
        ids = self.transcripts.values["input_ids"]
        return int(ids.min()), int(ids.max())

    def batches(self, batch_size: int, *, shuffle: bool = False, seed: int | None = None, epoch: int = 0):
        for rows, _ in buckets(self.rows, self.lengths, batch_size, self.bucket and shuffle, seed, epoch, shuffle):
            yield self._batch(rows)

    def _batch(self, rows: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return self._inputs([self.waveforms[i] for i in rows]), self.transcripts.labels(rows)

    def arrays(self) -> tuple[dict[str, np.ndarray], np.ndarray]:
        return self._batch(np.arange(len(self)))

    def __repr__(self) -> str:
        return (f"AudioDataset({self.name!r}, mode={self.mode!r}, rows={len(self)}, "
                f"longest={self.feature_shape[0]} samples)")


def _read(folder: Path, path: Any, row: int, name: str) -> np.ndarray:
    """Row ``row``'s clip as a 16 kHz waveform."""

    if not isinstance(path, (str, os.PathLike)) or not str(path).strip():
        raise DataError(f"{name}: row {row}'s audio path is {path!r}, not a path to a .wav file")
    file = Path(path) if Path(path).is_absolute() else folder / path
    if not file.is_file():
        raise DataError(f"{name}: row {row}'s audio file {file} does not exist (relative paths are read from "
                        f"{folder})")
    try:
        return waveforms(file, None)[0]
    except DataError as err:
        raise DataError(f"{name}: row {row}: {err}") from None
