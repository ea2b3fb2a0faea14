"""Texts to a model's token inputs with a ``tokenizers.Tokenizer``: shared by the zoo's text
models (:meth:`llmasos.zoo.text.TextModel.encode`) and the server, so both feed a model alike.

>>> from tokenizers import Tokenizer, models, pre_tokenizers
>>> tokenizer = Tokenizer(models.WordLevel({"[PAD]": 0, "a": 1, "good": 2, "film": 3}, unk_token="[PAD]"))
>>> tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
>>> batch = encode(tokenizer, ["a good film", "film"], {"input_ids": "int64", "attention_mask": "int64"})
>>> batch["input_ids"].tolist(), batch["attention_mask"].tolist()
([[1, 2, 3], [3, 0, 0]], [[1, 1, 1], [1, 0, 0]])

No framework is imported here, nor ``tokenizers`` (the caller hands over its tokenizer).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .errors import DataError

IGNORE_INDEX = -100  # a label the sequence losses leave out (Hugging Face's value)
# input name -> the ``tokenizers.Encoding`` attribute that fills it
COLUMNS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


class Tokens:
    """Texts tokenised and not yet padded: each input's tokens of every text, end to end, with
    where each text starts, so a batch is padded to its own longest text (:meth:`pad`) rather
    than the whole corpus to the longest one.

    >>> tokens = Tokens({"input_ids": [[5, 6, 7], [8]]}, {"input_ids": "int64"}, pad_id=0)
    >>> tokens.lengths.tolist(), tokens.pad([1])["input_ids"].tolist(), tokens.pad()["input_ids"].tolist()
    ([3, 1], [[8]], [[5, 6, 7], [8, 0, 0]])
    >>> tokens.labels().tolist()
    [[5, 6, 7], [8, -100, -100]]
    """

    def __init__(self, columns: Mapping[str, Sequence[Sequence[int]]], dtypes: Mapping[str, Any],
                 pad_id: int = 0) -> None:
        first = next(iter(columns.values()))
        self.lengths = np.array([len(row) for row in first], np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]]).astype(np.int64)
        self.dtypes, self.pad_id = dict(dtypes), pad_id
        self.values = {name: np.fromiter((t for row in rows for t in row), dtype=self.dtypes[name],
                                         count=int(self.lengths.sum()))
                       for name, rows in columns.items()}

    def __len__(self) -> int:
        return len(self.lengths)

    def pad(self, rows: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The texts ``rows`` (all by default, in order) padded to the longest of them: ids with
        the pad id, masks and token types with 0."""
        rows = np.arange(len(self)) if rows is None else np.asarray(rows, np.int64)
        lengths = self.lengths[rows]
        width = int(lengths.max()) if len(rows) else 0
        # a flat index of every kept token: row r's tokens go to [i, 0:len(r)]
        where = np.arange(width)[None, :] < lengths[:, None]
        source = (self.starts[rows][:, None] + np.arange(width)[None, :])[where]
        out = {}
        for name, values in self.values.items():
            batch = np.full((len(rows), width), self.pad_id if name == "input_ids" else 0, self.dtypes[name])
            batch[where] = values[source]
            out[name] = batch
        return out

    def labels(self, rows: Sequence[int] | np.ndarray | None = None) -> np.ndarray:
        """The ``input_ids`` of ``rows`` as labels: padded with :data:`IGNORE_INDEX`, which the
        sequence losses and metrics leave out."""
        ids = self.pad(rows)["input_ids"]
        lengths = self.lengths if rows is None else self.lengths[np.asarray(rows, np.int64)]
        return np.where(np.arange(ids.shape[1])[None, :] < lengths[:, None], ids, IGNORE_INDEX)


def tokenize(tokenizer: Any, texts: Sequence[str], dtypes: Mapping[str, Any], pad_id: int = 0,
             max_length: int | None = None, truncation: bool | None = None) -> Tokens:
    """``texts`` as the inputs named in ``dtypes`` (each one of :data:`COLUMNS`), unpadded.

    Raises :class:`~llmasos.errors.DataError` for no texts, a text of no tokens, or one longer
    than ``max_length`` tokens. ``truncation=True`` cuts such a text to ``max_length`` with the
    tokenizer's own truncation (special tokens such as [SEP] kept; the tokenizer is left as it
    was); ``False`` refuses it, saying that truncation=True would cut it; None refuses it.
    """
    unknown = [name for name in dtypes if name not in COLUMNS]
    if unknown:
        raise DataError(f"inputs {unknown} cannot be made from texts; only {list(COLUMNS)}")
    if not texts:
        raise DataError("no texts to encode")
    if truncation and max_length is not None:
        before = tokenizer.truncation
        tokenizer.enable_truncation(int(max_length))
        try:
            encodings = tokenizer.encode_batch(list(texts))
        finally:
            tokenizer.no_truncation() if before is None else tokenizer.enable_truncation(**before)
    else:
        encodings = tokenizer.encode_batch(list(texts))
    lengths = [len(e.ids) for e in encodings]
    if min(lengths) == 0:
        raise DataError(f"text {lengths.index(0)} has no tokens")
    if max_length is not None and max(lengths) > max_length:
        longest = int(np.argmax(lengths))
        hint = f" (truncation=True cuts it to {max_length})" if truncation is False else ""
        raise DataError(f"text {longest} has {lengths[longest]} tokens; the model takes at most {max_length}{hint}")
    return Tokens({name: [getattr(e, COLUMNS[name]) for e in encodings] for name in dtypes}, dtypes, pad_id)


def encode(tokenizer: Any, texts: Sequence[str], dtypes: Mapping[str, Any], pad_id: int = 0,
           max_length: int | None = None, max_elements: int | None = None) -> dict[str, np.ndarray]:
    """``texts`` as the inputs named in ``dtypes`` (each one of :data:`COLUMNS`), padded to the
    longest text with ``pad_id`` (ids) or 0 (mask, types).

    Raises :class:`~llmasos.errors.DataError` for no texts, a text of no tokens, one longer than
    ``max_length`` tokens (truncation, if wanted, is the tokenizer's: ``enable_truncation``), or
    more than ``max_elements`` tokens per input once padded (rows x longest), before padding.
    """
    tokens = tokenize(tokenizer, texts, dtypes, pad_id, max_length)
    length = int(tokens.lengths.max())
    if max_elements is not None and len(tokens) * length > max_elements:
        raise DataError(f"{len(tokens)} texts padded to {length} tokens make {len(tokens) * length:,} tokens "
                        f"per input; the limit is {max_elements:,} (max_tensor_elements)")
    return tokens.pad()
