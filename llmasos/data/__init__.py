"""``Dataset``: rows from CSV, Parquet, HDF5, NumPy or pandas, served as NumPy batches.

>>> import numpy as np
>>> ds = Dataset(np.arange(12.0).reshape(6, 2), np.array([0, 1, 0, 1, 0, 1]), mode="test")
>>> len(ds), ds.feature_shape, ds.label_dtype
(6, (2,), dtype('int64'))
>>> [(x.shape, y.tolist()) for x, y in ds.batches(4)]
[((4, 2), [0, 1, 0, 1]), ((2, 2), [0, 1])]

Sources:

* a path to ``.csv`` or ``.parquet``: one row per sample, a label column named by ``target``
  ("label" by default; ``target=None`` for no labels), every other column (or ``features=``) a
  numeric feature;
* a path to ``.h5``/``.hdf5`` or ``.npz``: arrays ``x`` (features, any shape after the sample
  axis) and ``y`` (or an array named by ``target``);
* a path to ``.npy`` holding the features, with ``y=`` the labels (an array or another ``.npy``);
* a pandas DataFrame (like a CSV), or NumPy arrays ``Dataset(X, y)``;
* texts: ``Dataset("reviews.csv", text="review", target="sentiment", tokenizer=model)`` reads a
  text column (of a CSV, Parquet file or DataFrame, or a list of strings with ``y=`` labels) and
  tokenises it once with a zoo text model's tokenizer (its inputs, padding and length limit) or a
  ``tokenizers.Tokenizer`` (or the path of a ``tokenizer.json``); see :class:`TextDataset`;
* speech: ``Dataset("clips.csv", audio="path", text="transcript", tokenizer=asr)`` reads a column
  of ``.wav`` paths and their transcripts for a zoo speech model; see :class:`AudioDataset`.

Images stay arrays in channels-first layout ``(N, C, H, W)``; ``shape=(1, 28, 28)`` reshapes flat
rows (784 CSV columns) into images. Only flat rows are reshaped: arrays of any other shape than
``shape`` (channels-last ``(N, 28, 28, 1)`` images, say) are refused with the layout expected.
Features come out float32 (``dtype="int64"`` for integer ids), labels int64 when every label is
a whole number (classes) and float32 otherwise (regression).

Only ``Model.train`` shuffles: it reads a ``mode="train"`` dataset in a new order every epoch
(the same order for the same ``(seed, epoch)``) and a ``mode="test"`` one in file order.
Everything else — ``predict``, ``evaluate``, validation, export calibration, :meth:`Dataset.batches`
unless asked with ``shuffle=True`` — reads every dataset in file order, whatever its mode.

Large files stream instead of loading whole: CSVs over 256 MB, Parquet files over 256 MB (by row
groups), HDF5 and ``.npy`` files over 256 MB (by slices), or any of them when ``chunk_size=N``
rows is given. A streamed file is read one chunk at a time, so memory stays near one chunk plus a
batch. Shuffling a streamed file is a *buffered* shuffle: each epoch visits the chunks in a random
order and the rows of each chunk in a random order, so a batch holds rows from one chunk (two at
a chunk boundary). Streaming a CSV first counts its rows in one cheap pass (CSV fields must not
contain line breaks), and the first use of a streamed file's labels reads it once through to learn
their type and range, which also checks every cell before training starts.

Modules, one per source: ``tabular`` (CSV, Parquet, DataFrames), ``arrays`` (HDF5, ``.npy``,
``.npz``), ``text`` (texts and their tokenising), ``digits`` (the bundled demo data); ``sources``
picks the reader, ``base`` is what every reader gives, ``dataset`` batches and shuffles any of them.
"""

from __future__ import annotations

from .audio import AudioDataset
from .dataset import DTYPES, MODES, Dataset, TextDataset
from .digits import digits_csv
from .text import named_classes

__all__ = ["DTYPES", "MODES", "AudioDataset", "Dataset", "TextDataset", "digits_csv", "named_classes"]
